"""End-to-end `detector run` on a small hand-made night: reports, metadata, exit codes, atomicity, state."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.errors import ConfigError, RunFailed
from detector.parquet_meta import read_metadata
from detector.pipeline import FailOn
from detector.report import contract
from detector.report.pseudonymize import pseudonym
from detector.state import STATE_FILE, load_state
from tests.run_fixtures import DAY, write_night, write_practitioners

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("night")
    return {
        "logs": write_night(d / "logs").parent,
        "next": write_night(d / "next", DAY + timedelta(days=1)).parent,
        "practitioners": write_practitioners(d / "practitioners.csv"),
    }


def cli(*args: str | Path, env: dict[str, str] | None = None):
    return RUNNER.invoke(app, [str(a) for a in args], env=env)


def _problems(stderr: str) -> list[str]:
    """stderr without the info lines every step logs under cron (CliRunner has no terminal)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("detector: info:")]


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and p.name != ".lock"}


def _state_tables(state: Path) -> dict[str, pl.DataFrame]:
    s = load_state(state)
    return {**{f"h.{k}": v for k, v in s.history.items()}, "shared": s.shared, "campaigns": s.campaigns}


def test_run_end_to_end(night, tmp_path, monkeypatch):
    out, state = tmp_path / "out", tmp_path / "state"
    args = (
        "run", night["logs"], "--out", out, "--state", state, "--practitioners", night["practitioners"],
        "--fail-on", "compromised", "--log-format", "json",
    )  # fmt: skip
    first = cli(*args)
    assert first.exit_code == 3, first.output  # the victim account is compromised

    # structured logs: every stderr line is one JSON object, the last one closes the run
    logs = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    assert logs and logs[-1]["msg"] == "run finished" and logs[-1]["attention"]
    assert all(line.startswith("{") for line in first.stderr.splitlines() if not line.startswith("reports:"))
    assert "Compromised accounts: 1" in first.stdout and "victim@example.org" in first.stdout
    assert len(first.stdout.splitlines()) <= 45, first.stdout

    # every report is there, with the contract's columns and the run's metadata
    names = {p.name for p in out.iterdir()}
    assert set(contract.ALL_FILES) <= names and not any(n.startswith(".tmp-") for n in names)
    summary = json.loads((out / "summary.json").read_text())
    run_id = summary["run"]["run_id"]
    assert any(w.startswith("no history yet") for w in summary["warnings"]), "a first night says so"
    for report in contract.PARQUET_REPORTS:
        meta = read_metadata(out / report.name)
        assert set(contract.Meta.ALL) <= set(meta), report.name
        assert meta["run_id"] == run_id and meta["report"] == report.name
        assert meta["inputs"][0]["sha256"] and meta["inputs"][0]["size"] > 0
        assert meta["window_start"].startswith("2025-03-01")
        assert pl.read_parquet_schema(out / report.name) == dict(report.schema())
    assert pl.read_parquet(out / "quarantine.parquet").height == 2
    accounts = pl.read_parquet(out / "accounts.parquet")
    assert accounts.filter(pl.col("verdict") == "compromised")["account"].to_list() == ["victim@example.org"]

    # the same night again: same verdicts, the state is not counted twice
    tables = _state_tables(state)
    assert tables["h.accounts"].height > 0 and tables["shared"].height > 0, (
        "the night was folded into the state"
    )
    # the attacker's address is not learned as one the compromised account's owner logs in from
    shared_ips = tables["shared"].filter(pl.col("scope") == "ip")["key"].to_list()
    assert "185.220.101.7" not in shared_ips and "198.51.100.200" in shared_ips
    victim = tables["h.accounts"].filter(
        pl.col("account") == "victim@example.org", pl.col("feature") == "source_ip"
    )
    assert victim["value"].to_list() == ["198.51.100.200"]
    second = cli(*args)
    assert second.exit_code == 3, second.output
    again = _state_tables(state)
    for name, frame in tables.items():
        assert again[name].equals(frame), name
    assert load_state(state).manifest.height == 1

    # a failure in a late stage publishes nothing and keeps the state
    before, state_before = _snapshot(out), (state / STATE_FILE).read_bytes()

    def boom(summary):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("detector.report.html.render_html", boom)
    failed = cli(*args)
    assert failed.exit_code == 1
    assert "disk on fire" in failed.stderr and "previous reports kept" in failed.stderr
    assert "run failed in step reports" in failed.stderr, "the error names the step that failed"
    logged = [json.loads(line) for line in failed.stderr.splitlines() if line.startswith("{")]
    errors = [e for e in logged if e["level"] == "error"]
    assert [(e["step"], e["exit_code"]) for e in errors] == [("reports", 1)], failed.stderr
    assert _snapshot(out) == before
    assert not list(out.glob(".tmp-*"))
    assert (state / STATE_FILE).read_bytes() == state_before
    monkeypatch.undo()

    # the next night folds in: two inputs in the manifest, history grows
    third = cli(
        "run", night["next"], "--out", out, "--state", state, "--practitioners", night["practitioners"]
    )
    assert third.exit_code == 0, third.output
    assert load_state(state).manifest.height == 2
    warned = json.loads((out / "summary.json").read_text())["warnings"]
    assert not any(w.startswith("no history yet") for w in warned), "the next night has a history"


def test_run_pseudonymized(night, tmp_path):
    out = tmp_path / "out"
    killed = out / ".tmp-20250101T000000Z-deadbeef"  # what a run killed with SIGKILL leaves behind
    killed.mkdir(parents=True)
    (killed / "events.parquet").write_bytes(b"PAR1 half written")
    res = cli("run", night["logs"], "--out", out, env={"DETECTOR_PSEUDONYMIZE_KEY": "k1"})
    assert not killed.exists()
    assert res.exit_code == 0, res.output  # no --fail-on: attention does not change the exit code
    victim = pseudonym("k1", "victim@example.org")
    accounts = pl.read_parquet(out / "accounts.parquet")
    assert victim in accounts["account"].to_list()
    for name in contract.ALL_FILES:
        data = (out / name).read_bytes()
        if name.endswith(".parquet"):
            data = pl.read_parquet(out / name).write_ndjson().encode()
        assert b"@example.org" not in data, name
    assert read_metadata(out / "events.parquet")["pseudonymized"] is True
    assert victim in res.stdout


def test_corrupt_state_is_a_usage_error(night, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILE).write_text('{"format": "detector-state", "version": 999, "tables": {}}')
    res = cli("run", night["logs"], "--out", tmp_path / "out", "--state", state)
    assert res.exit_code == 2
    assert len(_problems(res.stderr)) == 1 and "state format version" in res.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-on", "sometimes"], "--fail-on"),
        (["--config", "/nonexistent.toml"], "configuration file not found"),
        (["--model", "/nonexistent.skops"], "model file not found"),
    ],
)
def test_bad_usage_exits_2(night, tmp_path, args, message):
    res = cli("run", night["logs"], "--out", tmp_path / "out", *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and _problems(res.stderr)[0].startswith("detector: error:")


def test_a_model_refused_while_it_loads_beside_detection_exits_2(night, tmp_path, monkeypatch):
    import detector.score
    from detector.errors import ModelError

    def refuse(path):
        raise ModelError("model file contains types that are not trusted: x.Y", path=path)

    monkeypatch.setattr(detector.score, "load_model", refuse)
    res = cli("run", night["logs"], "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]  # after the run's warnings (no GeoIP, first night)
    assert last.startswith("detector: error:") and "not trusted: x.Y" in last
    assert not (tmp_path / "out" / "summary.json").exists()


def test_missing_input_exits_2(tmp_path):
    res = cli("run", tmp_path / "nope.log", "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert len(_problems(res.stderr)) == 1


def test_config_file_is_used(night, tmp_path):
    cfg = tmp_path / "detector.toml"
    cfg.write_text("[plan]\nblock_hours = 2.5\n")
    shown = cli("config", "show", "--config", cfg)
    assert shown.exit_code == 0 and "block_hours = 2.5" in shown.stdout
    out = tmp_path / "out"
    res = cli("run", night["logs"], "--out", out, "--config", cfg)
    assert res.exit_code == 0, res.output
    plan = pl.read_parquet(out / "recommendations.parquet")
    expiry = {
        a: plan.filter(pl.col("action") == a)["expires_at"].unique().to_list()
        for a in ("block", "restrict_account")
    }
    assert len(expiry["block"]) == 1 and len(expiry["restrict_account"]) == 1
    assert expiry["restrict_account"][0] - expiry["block"][0] == timedelta(hours=72 - 2.5)
    from detector import config as cfgmod

    assert read_metadata(out / "accounts.parquet")["config_sha256"] == cfgmod.load(cfg).digest()


@pytest.mark.parametrize(
    ("text", "rows", "fires"),
    [
        ("compromised", ["compromised"], True),
        ("compromised", ["targeted"], False),
        ("targeted", ["targeted"], True),
        ("0.8", ["clean"], True),
        ("0.95", ["compromised"], False),
    ],
)
def test_fail_on(text, rows, fires):
    accounts = pl.DataFrame({"verdict": rows, "risk_score": [0.9] * len(rows)})
    assert (FailOn.parse(text).check(accounts) is not None) == fires


@pytest.mark.parametrize("text", ["", "1.5", "-0.1", "sometimes"])
def test_fail_on_rejects(text):
    with pytest.raises(ConfigError):
        FailOn.parse(text)


def test_run_is_documented_and_help_exits_0():
    res = cli("run", "--help")
    assert res.exit_code == 0 and "--fail-on" in res.stdout
    assert os.path.exists(Path(__file__).resolve().parents[1] / "docs" / "operations.md")


def test_default_model_resolution(monkeypatch, tmp_path):
    from detector.pipeline import default_model_path

    monkeypatch.delenv("DETECTOR_MODEL", raising=False)
    shipped = default_model_path()
    assert shipped.name == "default.skops" and shipped.exists()
    assert shipped.parent.name in ("data", "models")
    monkeypatch.setenv("DETECTOR_MODEL", str(tmp_path / "mine.skops"))
    assert default_model_path() == tmp_path / "mine.skops"


def test_quiet_night_without_events(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "mail.log").write_text(
        "2025-03-01T10:00:00+00:00 mail dovecot: master: Dovecot v2.3.19 starting up for imap, pop3\n"
    )
    out = tmp_path / "out"
    res = cli("run", logs, "--out", out)
    assert res.exit_code == 0, res.output
    assert "0 events" in res.stdout
    for report in contract.PARQUET_REPORTS:
        assert pl.read_parquet_schema(out / report.name) == dict(report.schema())
    assert json.loads((out / "summary.json").read_text())["replay"]["strategies"] is None


@pytest.mark.parametrize(
    ("where", "raised", "caught", "step"),
    [
        ("detector.ingest.ingest", RuntimeError("parser bug"), RunFailed, "ingest"),
        ("detector.recommend.recommend", ConfigError("bad allowlist"), ConfigError, "recommend"),
        ("detector.state.fold_night", RuntimeError("fold bug"), RunFailed, "state"),
    ],
)
def test_a_failed_run_names_its_step_and_publishes_nothing(
    night, tmp_path, monkeypatch, where, raised, caught, step
):
    from detector.pipeline import run

    def boom(*a, **k):
        raise raised

    monkeypatch.setattr(where, boom)
    out = tmp_path / "out"
    with pytest.raises(caught) as e:
        run([night["logs"]], out, state_dir=tmp_path / "state", practitioners=night["practitioners"])
    assert e.value.step == step
    assert e.value.exit_code == (2 if caught is ConfigError else 1)
    if caught is RunFailed:
        assert f"run failed in step {step}, previous reports kept" in str(e.value)
    assert not [p for p in out.iterdir() if p.name != ".lock"], "nothing published"
    assert load_state(tmp_path / "state").is_empty, "the state is unchanged"


def test_every_step_of_a_run_is_timed_in_order(night, tmp_path):
    """The progress bar counts STEPS: a run with a state goes through each of them, in that order."""
    from detector.pipeline import STEPS, run

    result = run(
        [night["logs"]], tmp_path / "out", state_dir=tmp_path / "state", practitioners=night["practitioners"]
    )
    assert tuple(result.timings) == STEPS
    assert result.state_generation == 1
