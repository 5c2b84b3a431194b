"""bench/stuffing_next_day.py: next-day stuffing attempts split by target and source, with the share stopped."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import polars as pl
import pytest

from detector.schema import UTC_US

BENCH = Path(__file__).resolve().parents[1] / "bench" / "stuffing_next_day.py"
T0 = dt.datetime(2026, 11, 17, 8, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("stuffing_next_day", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def day(rows: list[tuple[str, str, str, str | None]]) -> pl.DataFrame:
    """Login events (account, source, outcome, label technique), a minute apart."""
    return pl.DataFrame(
        {
            "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(len(rows))],
            "account": [r[0] for r in rows],
            "source_ip": [r[1] for r in rows],
            "asn": [64500] * len(rows),
            "service": ["imap"] * len(rows),
            "action": ["login"] * len(rows),
            "outcome": [r[2] for r in rows],
            "is_practitioner": [False] * len(rows),
            "is_private": [False] * len(rows),
            "is_attack": [r[3] is not None for r in rows],
            "label_technique": [r[3] for r in rows],
        },
        schema_overrides={"timestamp": UTC_US},
    )


PLAN = pl.DataFrame(
    {
        "action": ["block"],
        "target": ["198.51.100.1"],
        "services": [None],
        "allowed_networks": [None],
        "expires_at": [T0 + dt.timedelta(days=1)],
    },
    schema_overrides={
        "services": pl.List(pl.String),
        "allowed_networks": pl.List(pl.String),
        "expires_at": UTC_US,
    },
)
EARLIER = pl.DataFrame({"account": ["ann@x.example"], "source_ip": ["198.51.100.1"]})
CS = "credential_stuffing"


@pytest.mark.parametrize(
    ("row", "target", "source", "stopped"),
    [
        (("Ann@x.example", "198.51.100.1", "failure", CS), "account tried before", "proxy used before", 1),
        (("ann@x.example", "203.0.113.9", "failure", CS), "account tried before", "new proxy", 0),
        (("bob@x.example", "203.0.113.9", "failure", CS), "account new to the list", "new proxy", 0),
        (("nobody@x.example", "198.51.100.1", "unknown_user", CS), "unknown name", "proxy used before", 1),
    ],
)
def test_each_attempt_lands_in_its_kind(bench, row, target, source, stopped) -> None:
    got = bench.split(PLAN, day([row, ("carol@x.example", "192.0.2.4", "success", None)]), EARLIER)
    assert got.select("target", "source", "attempts", "stopped").to_dicts() == [
        {"target": target, "source": source, "attempts": 1, "stopped": stopped}
    ]


def test_other_techniques_and_legitimate_logins_are_left_out(bench) -> None:
    got = bench.split(
        PLAN,
        day(
            [
                ("ann@x.example", "198.51.100.1", "failure", "password_spraying"),
                ("ann@x.example", "192.0.2.4", "success", None),
            ]
        ),
        EARLIER,
    )
    assert got.is_empty()
