"""bench/plan_quality.py's fresh-world record: written as TOML, read back, summarised per target."""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
from pathlib import Path

import polars as pl
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "plan_quality.py"


@pytest.fixture(scope="module")
def pq():
    spec = importlib.util.spec_from_file_location("plan_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def world(seed: int, stopped: float, inside: float | None) -> dict:
    return {
        "seed": seed,
        "accounts": 3000,
        "days": 3,
        "compromised_found_pct": 100.0,
        "false_locks_per_10k": 0.0,
        "attack_stopped_pct": stopped,
        "attacker_logins_pct": inside,
        "legit_refused_pct": 0.2,
        "practitioner_refused_pct": 0.05,
        "by_technique": {
            "credential_stuffing": {"attempts": 9, "stopped_pct": stopped, "logins": 0, "logins_in_pct": None}
        },
        "mix": {"scale": 1.5, "burst_hours": [1.0, 2.5], "takeover_infra": [0.5, 0.5]},
    }


def test_record_round_trips_through_toml(pq, tmp_path: Path) -> None:
    path = tmp_path / "fresh.toml"
    pq.append_record(path, world(1234, 91.5, None))
    pq.append_record(path, world(5678, 80.0, 25.0))
    rows = pq.read_record(path)
    assert [r["seed"] for r in rows] == [1234, 5678]
    assert math.isnan(rows[0]["attacker_logins_pct"])
    assert rows[1]["mix"]["burst_hours"] == [1.0, 2.5]
    assert rows[1]["by_technique"]["credential_stuffing"]["stopped_pct"] == 80.0
    assert path.read_text().startswith("# Fresh worlds")


def test_a_hostile_string_stays_one_toml_string(pq, tmp_path: Path) -> None:
    path = tmp_path / "fresh.toml"
    entry = world(1, 90.0, 1.0) | {"code": 'abc"\n[[world]]\nseed = 0'}
    pq.append_record(path, entry)
    rows = pq.read_record(path)
    assert len(rows) == 1 and rows[0]["code"] == entry["code"]


@pytest.mark.parametrize(
    ("stopped", "met"),
    [([95.0] * 10, "10/10"), ([95.0] * 9 + [80.0], "9/10"), ([80.0] * 10, "0/10")],
)
def test_summary_counts_the_worlds_meeting_each_target(pq, stopped: list[float], met: str) -> None:
    text = pq.summarise([world(i, s, 5.0) for i, s in enumerate(stopped)], [])
    line = next(x for x in text.splitlines() if x.startswith("attack attempts stopped"))
    assert met in line
    assert "credential_stuffing" in text


def test_account_figures_count_found_and_false_locks(pq) -> None:
    now = dt.datetime(2026, 11, 17, tzinfo=dt.UTC)
    labels = pl.DataFrame(
        {
            "account": ["a@x", "b@x", "c@x"],
            "compromised": [True, True, False],
            "start": [now - dt.timedelta(hours=2), now + dt.timedelta(hours=2), now],
        }
    )
    plan = pl.DataFrame(
        {
            "action": ["reset_credentials", "lock_account", "restrict_account", "monitor"],
            "target_type": ["account"] * 4,
            "target": ["A@x", "z@x", "c@x", "b@x"],
            "_now": [now] * 4,
        }
    )
    got = pq.account_figures({1: plan}, labels, 10_000)
    assert got == {
        "compromised": 1,
        "compromised_found_pct": 100.0,
        "false_locks": 1,
        "false_locks_per_10k": 1.0,
    }
