"""The CLI's presentation: --json on stdout, -V, completion, help without Python types, one-line usage errors."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from pathlib import Path

import pytest

from detector import __version__
from detector.cli import main
from tests.run_fixtures import write_night, write_practitioners

COMMANDS = ["run", "ingest", "replay", "export", "simulate", "train", "evaluate", "explain", "config show",
            "override lift", "override extend", "override list"]  # fmt: skip


def call(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    d = tmp_path_factory.mktemp("presentation")
    logs = write_night(d / "logs").parent
    out = d / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(
            ["run", str(logs), "--out", str(out), "--practitioners", str(write_practitioners(d / "p.csv"))]
        )
    return {"logs": logs, "out": out, "code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_no_python_type(capsys, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = call(capsys, *command.split(), "--help")
    assert code == 0 and "Usage" in out
    assert not re.search(r"<(bool|str|int|float|path|list\[[a-z]+\]|datetime)>", out), out


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(capsys, flag):
    assert call(capsys, flag) == (0, f"detector {__version__}\n", "")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run"], "Missing argument"),
        (["run", "x", "--out", "o", "--bogus"], "No such option: --bogus"),
        (["export", "--plan", "p", "--format", "nope"], "'nope' is not one of"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_on_stderr(capsys, args, words):
    code, out, err = call(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("detector: error: ") and words in err, err


def test_completion_is_offered(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    _, out, _ = call(capsys, "--help")
    assert "--install-completion" in out and "--show-completion" in out


def test_config_show_lists_every_detectors_thresholds(capsys):
    from detector.detect.registry import REGISTRY

    code, out, _ = call(capsys, "config", "show")
    assert code == 0
    for name in REGISTRY:
        assert f"[detectors.{name}]" in out
    code, out, _ = call(capsys, "config", "show", "--json")
    data = json.loads(out)
    assert set(data["detectors"]) == set(REGISTRY)
    assert all("enabled" in params for params in data["detectors"].values())


def test_ingest_json(capsys, tmp_path):
    logs = write_night(tmp_path / "logs")
    code, out, _ = call(capsys, "ingest", logs, "--out", tmp_path / "ev.parquet", "--json")
    data = json.loads(out)
    assert code == 0 and data["lines_read"] > 0 and data["events"] > 0 and data["quarantined"] == 2
    assert sum(k["events"] for k in data["by_kind"]) == data["events"]


def test_explain_replay_and_export_json(capsys, night):
    out = night["out"]
    code, text, _ = call(capsys, "explain", "victim@example.org", "--run", out, "--json")
    data = json.loads(text)
    assert (
        code == 0 and data["target"] == "victim@example.org" and data["verdict"]["verdict"] == "compromised"
    )
    code, text, _ = call(
        capsys, "export", "--plan", out / "recommendations.parquet", "--format", "csv", "--json"
    )
    data = json.loads(text)
    assert code == 0 and data["format"] == "csv" and data["text"].startswith("measure_id,")
    plan = out / "recommendations.parquet"
    code, text, err = call(capsys, "replay", night["logs"], "--plan", plan, "--json")
    data = json.loads(text)
    assert code == 0 and data["table"][0]["strategy"] == "plan"
    assert "detector: warning: no practitioner directory" in err and "detector: warning: no GeoIP" in err
    assert "detector: info: replay done" in err


def test_run_under_cron_logs_every_step_and_prints_whole_lines(night):
    assert night["code"] == 0
    for step in ("ingest", "enrich", "detect", "score", "recommend"):
        assert f"detector: info: {step} done" in night["stderr"], night["stderr"]
    assert "…" not in night["stdout"] and "Next:" in night["stdout"]


@pytest.mark.parametrize(
    ("journald", "prefix"), [(True, "<4>detector: warning: "), (False, "detector: warning: ")]
)
def test_text_logs_have_levels_and_journald_priorities(journald, prefix):
    from detector.logging_setup import TextFormatter

    record = logging.LogRecord(
        "detector", logging.WARNING, __file__, 1, "bad\nforged line\x1b[2J", None, None
    )
    line = TextFormatter(journald=journald).format(record)
    assert line.startswith(prefix) and "\n" not in line and "\x1b" not in line
    assert line.endswith("bad\\nforged line\\x1b[2J")


def test_steps_are_logged_when_they_start_and_end(caplog):
    from detector.logging_setup import step

    with caplog.at_level(logging.INFO, logger="detector"), step("fit", events=3):
        pass
    assert [r.getMessage() for r in caplog.records] == ["fit ...", "fit done"]


def test_ingest_is_named_apart_from_a_runs_events(capsys, night, tmp_path):
    logs = write_night(tmp_path / "logs")
    code, _, err = call(capsys, "ingest", logs, "--out", night["out"] / "events.parquet")
    assert code == 2 and "refusing to overwrite a run's scored events" in err
    code, out, err = call(capsys, "ingest", logs, "--out", tmp_path / "events.parquet", "--json")
    assert (
        code == 0
        and "canonical.parquet" in err
        and any("canonical" in w for w in json.loads(out)["warnings"])
    )


def test_one_default_configuration_path(capsys, monkeypatch, tmp_path):
    from detector import config

    assert Path("/etc/detector/detector.toml") == config.DEFAULT_PATH
    cfg = tmp_path / "detector.toml"
    cfg.write_text("[scoring]\naccount_compromised = 0.9\n")
    monkeypatch.setenv("DETECTOR_CONFIG", str(cfg))
    code, out, _ = call(capsys, "config", "show")
    assert code == 0 and "account_compromised = 0.9" in out
    monkeypatch.setenv("DETECTOR_CONFIG", str(tmp_path / "missing.toml"))
    code, _, err = call(capsys, "config", "show")
    assert code == 2 and "configuration file not found" in err


def test_collateral_report_names_the_accounts_each_measure_counts(night):
    import polars as pl

    plan = pl.read_parquet(night["out"] / "recommendations.parquet")
    collateral = pl.read_parquet(night["out"] / "collateral.parquet")
    acting = plan.filter(pl.col("action").is_in(["block", "reset_credentials"]))
    counted = collateral.group_by("measure_id").len()
    joined = acting.join(counted, on="measure_id", how="left").with_columns(pl.col("len").fill_null(0))
    assert (joined["len"] == joined["collateral_accounts"]).all()
    assert collateral.filter(pl.col("action") == "reset_credentials")["account"].to_list() == [
        "victim@example.org"
    ]
