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


def labelled_day(outcomes: list[tuple[str, str, bool]]) -> pl.DataFrame:
    """Login events (technique, outcome, is_attack), one a minute, each from its own address."""
    t0 = dt.datetime(2026, 11, 17, tzinfo=dt.UTC)
    return pl.DataFrame(
        {
            "timestamp": [t0 + dt.timedelta(minutes=i) for i in range(len(outcomes))],
            "account": [f"u{i}@x" for i in range(len(outcomes))],
            "source_ip": [f"198.51.100.{i + 1}" for i in range(len(outcomes))],
            "action": ["login"] * len(outcomes),
            "outcome": [o for _, o, _ in outcomes],
            "is_attack": [a for _, _, a in outcomes],
            "label_technique": [t for t, _, _ in outcomes],
        }
    )


def test_existing_account_replays_leave_out_names_that_do_not_exist(pq) -> None:
    from detector.config import Config
    from detector.schema import RECOMMENDATION_SCHEMA

    day = labelled_day(
        [
            ("credential_stuffing", "unknown_user", True),
            ("credential_stuffing", "unknown_user", True),
            ("credential_stuffing", "failure", True),
            ("password_spraying", "failure", True),
            ("password_spraying", "unknown_user", True),
            (None, "unknown_user", False),
            (None, "success", False),
        ]
    )
    got = pq.technique_replays(pl.DataFrame(schema=RECOMMENDATION_SCHEMA), day, Config())
    attempts = {k: v.row("plan")["attack_attempts"] for k, v in got.items()}
    assert attempts == {
        "all/existing": 2,
        "credential_stuffing": 3,
        "credential_stuffing/existing": 1,
        "password_spraying": 2,
        "password_spraying/existing": 1,
    }
    assert got["all/existing"].row("plan")["legit_logins"] == 1
    figures = pq.technique_figures({1: got})
    assert figures["credential_stuffing"]["attempts_existing"] == 1
    assert pq.existing_figures({1: got}) == {
        "attack_attempts_existing": 2,
        "attack_stopped_existing_pct": 0.0,
    }


def test_summary_shows_the_existing_account_share_beside_the_total(pq) -> None:
    rows = [world(i, 80.0, 5.0) | {"attack_stopped_existing_pct": 92.0 + i} for i in range(10)]
    for r in rows:
        r["by_technique"]["credential_stuffing"]["stopped_existing_pct"] = 50.0
    lines = pq.summarise(rows, []).splitlines()
    total = next(i for i, x in enumerate(lines) if x.startswith("attack attempts stopped"))
    assert "0/10" in lines[total]
    assert lines[total + 1].strip().startswith("those on existing accounts") and "10/10" in lines[total + 1]
    assert "on existing accounts   50.0%" in pq.summarise(rows, [])


def test_known_replay_counts_only_accounts_compromised_before_the_plan(pq) -> None:
    from detector.config import Config
    from detector.schema import RECOMMENDATION_SCHEMA

    day = labelled_day(
        [
            ("account_takeover", "success", True),
            ("account_takeover", "success", True),
            (None, "success", False),
        ]
    )
    got = pq.technique_replays(pl.DataFrame(schema=RECOMMENDATION_SCHEMA), day, Config(), ["u1@x"])
    assert got["all/known"].row("plan")["attacker_logins"] == 1
    assert got["all/known"].row("plan")["legit_logins"] == 1
    figures = pq.existing_figures({1: got})
    assert figures["attacker_logins_known"] == 1 and figures["attacker_logins_known_pct"] == 100.0
    assert "all/known" not in pq.technique_replays(pl.DataFrame(schema=RECOMMENDATION_SCHEMA), day, Config())
    assert "account_takeover" in pq.technique_figures({1: got})


@pytest.mark.parametrize(
    ("warmup", "says"),
    [
        (None, "3000 accounts x 3 days)"),
        (0, "3000 accounts x 3 days)"),
        (1, "x 3 days, first 1 without a plan"),
    ],
)
def test_summary_says_how_many_first_days_only_built_the_state(pq, warmup, says: str) -> None:
    row = world(1, 95.0, 5.0) | ({} if warmup is None else {"warmup": warmup})
    assert says in pq.summarise([row], []).splitlines()[1]


def test_a_warmup_that_leaves_no_day_pair_is_refused(pq) -> None:
    with pytest.raises(SystemExit, match="leaves no day pair"):
        pq.main(
            ["--fresh", "1", "--days", "3", "--warmup", "2", "--no-model", "--record", "/nonexistent/x.toml"]
        )
