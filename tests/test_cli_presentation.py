"""The CLI's presentation: --json on stdout, -V, completion, help without Python types, one-line usage errors."""

from __future__ import annotations

import json
import re

import pytest

from detector import __version__
from detector.cli import main
from detector.pipeline import run
from tests.run_fixtures import write_night, write_practitioners

COMMANDS = ["run", "ingest", "replay", "export", "simulate", "train", "evaluate", "explain", "config show"]


def call(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    d = tmp_path_factory.mktemp("presentation")
    logs = write_night(d / "logs").parent
    out = d / "out"
    run([logs], out, practitioners=write_practitioners(d / "practitioners.csv"))
    return {"logs": logs, "out": out}


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
    code, text, _ = call(capsys, "replay", night["logs"], "--plan", plan, "--json")
    data = json.loads(text)
    assert code == 0 and data["table"][0]["strategy"] == "plan"
