"""Configuration ranges (every key has one, checked however a section is built) and the
command-line options that override ``--config`` only when given."""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from detector import config as cfgmod
from detector.cli import app
from detector.config import RANGE, SECTIONS, Config, PlanConfig, ScoringConfig
from detector.errors import ConfigError
from tests.ingest_helpers import write_log

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def every_key() -> list[tuple[type, dataclasses.Field]]:
    return [(cls, f) for cls in SECTIONS for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(
    ("cls", "f"), every_key(), ids=lambda x: getattr(x, "name", getattr(x, "SECTION", ""))
)
def test_every_key_has_a_range_its_default_satisfies(cls, f):
    rng = f.metadata.get(RANGE)
    assert rng is not None, f"[{cls.SECTION}] {f.name} has no range"
    assert rng.error(f.default) is None
    assert rng.describe()


def test_every_section_is_ranged():
    assert {f.name for f in dataclasses.fields(Config)} - {"detectors"} == {c.SECTION for c in SECTIONS}


@pytest.mark.parametrize(
    ("cls", "f"), every_key(), ids=lambda x: getattr(x, "name", getattr(x, "SECTION", ""))
)
def test_every_key_and_its_range_are_documented(cls, f):
    """docs/operations.md has one table row per key: `[section] key` | default | range."""
    rows = [
        line for line in DOCS.read_text().splitlines() if line.startswith(f"| `[{cls.SECTION}] {f.name}`")
    ]
    assert len(rows) == 1, f"[{cls.SECTION}] {f.name} is not in the table of docs/operations.md"
    assert f.metadata[RANGE].describe() in rows[0]


BAD = [
    ("plan", "block_hours", "-5"),
    ("plan", "block_hours", "0"),
    ("plan", "restrict_hours", "nan"),
    ("plan", "block_hours", "inf"),
    ("plan", "restrict_hours", "-inf"),
    ("scoring", "source_malicious", "-0.5"),
    ("scoring", "account_compromised", "7"),
    ("scoring", "account_suspicious", "nan"),
    ("scoring", "shared_address_min_accounts", "1"),
    ("plan", "collateral_budget_accounts", "-1"),
    ("plan", "collateral_budget_practitioners", "-3"),
    ("plan", "mainstream_share", "1.5"),
    ("plan", "widest_block_v4", "0"),
    ("plan", "widest_block_v6", "8"),
    ("plan", "allowlist", '["0.0.0.0/0x"]'),
    ("plan", "restrict_min_attempts", "0"),
    ("state", "horizon_days", "-1"),
    ("state", "horizon_days", "0"),
    ("features", "window", '"0d"'),
    ("features", "window", '"daily"'),
    ("features", "baseline_alpha", "nan"),
    ("features", "cold_start_successes", "-2"),
    ("ingest", "year", "-2026"),
    ("ingest", "timezone", '"Mars/Olympus"'),
    ("ingest", "max_line_bytes", "0"),
    ("ingest", "chunk_bytes", "-1"),
    ("enrich", "hosting_asns", "[-1]"),
    ("enrich", "geoip_dir", '""'),
    ("detectors.suspicious_success", "min_baseline_score", "nan"),
    ("detectors.suspicious_success", "attacker_max_success_share", "inf"),
    ("detectors.brute_force", "min_failures", "-5"),
]


@pytest.mark.parametrize(("section", "name", "value"), BAD)
def test_out_of_range_toml_exits_2_with_one_line_naming_the_key(tmp_path, section, name, value):
    path = tmp_path / "detector.toml"
    path.write_text(f"[{section}]\n{name} = {value}\n")
    res = CliRunner().invoke(app, ["config", "show", "--config", str(path)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("detector: error:"), res.output
    assert f"[{section}] {name}" in lines[0] and str(path) in lines[0], lines[0]
    assert "Traceback" not in res.output


def test_suspicious_above_compromised_is_refused():
    with pytest.raises(ConfigError, match=r"\[scoring\] account_suspicious .* above account_compromised"):
        Config().replace(scoring={"account_suspicious": 0.6, "account_compromised": 0.5})


@pytest.mark.parametrize(
    "build",
    [
        lambda: PlanConfig(block_hours=-5),
        lambda: Config().replace(plan={"block_hours": math.nan}),
        lambda: ScoringConfig(account_compromised=math.inf),
        lambda: cfgmod.from_mapping(Config, {"plan": {"block_hours": -5.0}}),
    ],
)
def test_ranges_hold_however_a_section_is_built(build):
    with pytest.raises(ConfigError, match=r"block_hours|account_compromised"):
        build()


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_threshold_is_accepted_exactly_in_its_range(x):
    inside = math.isfinite(x) and 0.0 < x <= 1.0
    try:
        ScoringConfig(source_malicious=x, source_suspicious=min(x, 0.2) if inside else 0.2)
    except ConfigError as e:
        assert not inside and "source_malicious" in str(e)
    else:
        assert inside


@pytest.mark.parametrize("value", ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "AS64500", "as64500"])
def test_valid_allowlist_entries_pass(value):
    assert PlanConfig(allowlist=(value,)).allowlist == (value,)


def test_overridden_keeps_the_configured_values_of_options_not_given():
    cfg = Config().replace(ingest={"year": 2021, "timezone": "Europe/Paris"})
    assert cfg.overridden(ingest={"year": None, "timezone": None}).ingest == cfg.ingest
    assert cfg.overridden(ingest={"year": 2024, "timezone": None}).ingest.timezone == "Europe/Paris"
    assert cfg.overridden(ingest={"year": None, "timezone": "UTC"}).ingest.year == 2021


LINE = "Nov 22 10:00:02 mx1 dovecot: imap-login: Disconnected (auth failed, 1 attempts in 1 secs): user=<ann@x.org>, method=PLAIN, rip=192.0.2.50, lip=192.0.2.1, TLS, session=<k1>"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], datetime(2021, 11, 22, 9, 0, 2, tzinfo=UTC)),  # [ingest] year and timezone from --config
        (["--timezone", "UTC"], datetime(2021, 11, 22, 10, 0, 2, tzinfo=UTC)),
        (["--year", "2023"], datetime(2023, 11, 22, 9, 0, 2, tzinfo=UTC)),
    ],
)
def test_ingest_reads_year_and_timezone_from_the_config(tmp_path, options, expected):
    conf = tmp_path / "detector.toml"
    conf.write_text('[ingest]\nyear = 2021\ntimezone = "Europe/Paris"\n')
    log = write_log(tmp_path / "mail.log", [LINE])
    out = tmp_path / "events.parquet"
    res = CliRunner().invoke(app, ["ingest", str(log), "--out", str(out), "--config", str(conf), *options])
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(out)["timestamp"].to_list() == [expected]


@pytest.mark.parametrize(
    ("options", "year", "timezone"),
    [([], 2021, "Europe/Paris"), (["--timezone", "UTC", "--year", "2024"], 2024, "UTC")],
)
def test_replay_reads_year_and_timezone_from_the_config(tmp_path, monkeypatch, options, year, timezone):
    seen: list[Config] = []

    class Done:
        def render(self) -> str:
            return ""

    def fake(paths, plan, cfg, **kw):
        seen.append(cfg)
        return Done()

    monkeypatch.setattr(importlib.import_module("detector.recommend.replay"), "replay_logs", fake)
    conf = tmp_path / "detector.toml"
    conf.write_text('[ingest]\nyear = 2021\ntimezone = "Europe/Paris"\n')
    plan = tmp_path / "plan.parquet"
    plan.touch()
    args = ["replay", "--plan", str(plan), str(tmp_path), "--config", str(conf), *options]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (seen[0].ingest.year, seen[0].ingest.timezone) == (year, timezone)


def test_documented_ranges_table_has_no_unknown_key():
    keys = {f"[{cls.SECTION}] {f.name}" for cls, f in every_key()}
    listed = set(re.findall(r"^\| `(\[\w+\] \w+)`", DOCS.read_text(), flags=re.M))
    assert listed <= keys, listed - keys
