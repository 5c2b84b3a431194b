"""One analysis for every command: `evaluate`, `replay` and `train` see the night as `run` does.

Two hand-made nights (tests/run_fixtures.py) go through `detector run` with a state; the second
night is then evaluated, replayed and prepared for training against the same state, and the
verdicts each command worked from are compared with the ones `run` published.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from run_fixtures import DAY, write_night, write_practitioners

from detector import engine
from detector.config import Config
from detector.features import FEATURE_COLUMNS
from detector.schema import C

LABELS = (
    "campaign,technique,source_ip,account,start,end,compromised\n"
    "BF-1,brute_force,185.220.101.7,victim@example.org,,,true\n"
)


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> dict[str, Any]:
    from detector.pipeline import run

    root = tmp_path_factory.mktemp("engine")
    geoip = root / "no-geoip"
    geoip.mkdir()
    first = write_night(root / "n1", DAY)
    second = write_night(root / "n2", DAY + timedelta(days=1))
    practitioners = write_practitioners(root / "practitioners.csv")
    labels = root / "incidents.csv"
    labels.write_text(LABELS, encoding="utf-8")
    state = root / "state"
    common = {"state_dir": state, "practitioners": practitioners, "geoip_dir": geoip}
    run([first], root / "out1", **common)
    run([second], root / "out2", **common)
    return {"second": second, "out": root / "out2", "labels": labels, "root": root, **common}


def _verdicts(frame: pl.DataFrame, key: str) -> dict[str, str]:
    return dict(frame.select(key, "verdict").iter_rows())


def _run_verdicts(out: Path) -> tuple[dict[str, str], dict[str, str]]:
    return (
        _verdicts(pl.read_parquet(out / "accounts.parquet"), C.ACCOUNT),
        _verdicts(pl.read_parquet(out / "sources.parquet"), C.SOURCE_IP),
    )


def _evaluated(nights: dict[str, Any], monkeypatch, state_dir: Path | None) -> Any:
    import detector.score.evaluate as ev

    seen: list[Any] = []
    measure = ev.metrics_for
    monkeypatch.setattr(ev, "metrics_for", lambda scores, *a: seen.append(scores) or measure(scores, *a))
    ev.evaluate(
        engine.default_model_path(), nights["second"], nights["labels"], geoip_dir=nights["geoip_dir"],
        practitioners=nights["practitioners"], state_dir=state_dir, write=False,
    )  # fmt: skip
    return seen[0]


def test_evaluate_gives_runs_verdicts_on_the_same_night_and_state(nights, monkeypatch):
    scores = _evaluated(nights, monkeypatch, nights["state_dir"])
    accounts, sources = _run_verdicts(nights["out"])
    assert accounts and sources
    assert _verdicts(scores.accounts, C.ACCOUNT) == accounts
    assert _verdicts(scores.sources, C.SOURCE_IP) == sources


def _risks(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return events.lazy().select(C.EVENT_ID, C.RISK_SCORE).sort(C.EVENT_ID).collect()


def test_evaluate_gives_runs_event_risks(nights, monkeypatch):
    scores = _evaluated(nights, monkeypatch, nights["state_dir"])
    assert _risks(scores.events).equals(_risks(pl.scan_parquet(nights["out"] / "events.parquet")))


def test_evaluate_without_the_state_sees_another_night(nights, monkeypatch):
    """The state matters on this night (so the tests above can fail): without the first night's
    history the logins of known users look newer and their risk changes."""
    scores = _evaluated(nights, monkeypatch, None)
    assert not _risks(scores.events).equals(_risks(pl.scan_parquet(nights["out"] / "events.parquet")))


def test_replay_judges_the_day_with_runs_verdicts(nights, monkeypatch):
    """`detector replay --state` of night 1's plan on night 2 is `run`'s next-day replay of night 2."""
    import json

    from detector.report.summary import replay_rows

    rp = importlib.import_module("detector.recommend.replay")
    seen: list[pl.DataFrame] = []
    replay = rp.replay
    monkeypatch.setattr(
        rp, "replay", lambda plan, events, *a, **k: seen.append(events) or replay(plan, events, *a, **k)
    )
    result = rp.replay_logs(
        [str(nights["second"])], nights["root"] / "out1" / "recommendations.parquet", Config(),
        geoip_dir=nights["geoip_dir"], practitioners=nights["practitioners"], state_dir=nights["state_dir"],
    )  # fmt: skip
    assert _risks(seen[0]).equals(_risks(pl.scan_parquet(nights["out"] / "events.parquet")))
    summary = json.loads((nights["out"] / "summary.json").read_text())["replay"]
    assert summary["kind"] == "next_day" and result.truth == "verdicts"
    rows = replay_rows(result)
    assert rows == summary["strategies"]
    assert rows[0]["attack_attempts"] > 0


def test_train_builds_its_frame_through_the_one_analysis(nights, monkeypatch):
    from detector.score.train import prepare

    calls: list[str] = []
    analyse = engine.analyse
    monkeypatch.setattr(engine, "analyse", lambda *a, **k: calls.append(k["until"]) or analyse(*a, **k))
    prepared = prepare(
        nights["second"], geoip_dir=nights["geoip_dir"], practitioners=nights["practitioners"],
        state_dir=nights["state_dir"],
    )  # fmt: skip
    assert calls == ["detect"]
    published = pl.read_parquet(nights["out"] / "events.parquet")
    assert sorted(prepared.events.get_column(C.EVENT_ID).to_list()) == sorted(
        published.get_column(C.EVENT_ID).to_list()
    )
    # the features the reports keep (the baseline score reads the state's history) and the detectors fired
    wanted = (*FEATURE_COLUMNS, C.DETECTORS, C.CAMPAIGN)
    shared = [c for c in wanted if c in published.columns and c in prepared.events.columns]
    assert "baseline_score" in shared and C.DETECTORS in shared
    ordered = prepared.events.sort(C.EVENT_ID).select(shared)
    assert ordered.equals(published.sort(C.EVENT_ID).select(shared))


def test_analyse_refuses_an_unknown_last_step():
    with pytest.raises(ValueError, match="until"):
        engine.analyse(pl.DataFrame(), Config(), work_dir=Path("."), until="report")


def test_no_stage_imports_the_pipeline():
    """The stages and the engine sit below the orchestrator: none imports detector.pipeline."""
    import ast

    root = Path(engine.__file__).parent
    above = {"pipeline.py", "runner.py", "cli.py", "__main__.py"}
    offenders = []
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] in above:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "detector.pipeline" for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


@pytest.mark.parametrize("with_state", [True, False], ids=["--state", "no state"])
def test_train_on_the_command_line_reads_the_state(nights, monkeypatch, tmp_path, with_state):
    """`detector train --state DIR` builds its frame against the generation `run` used for the night."""
    from typer.testing import CliRunner

    import detector.score.train as tr
    from detector.cli import app

    priors: list[Any] = []
    analyse = engine.analyse
    monkeypatch.setattr(engine, "analyse", lambda *a, **k: priors.append(k["prior"]) or analyse(*a, **k))
    monkeypatch.setattr(tr, "train_frames", lambda prepared, *a, **k: _Trained(prepared))
    args = ["train", "--events", str(nights["second"]), "--labels", str(nights["labels"]),
            "--out", str(tmp_path / "m"), "--geoip-dir", str(nights["geoip_dir"]),
            "--practitioners", str(nights["practitioners"])]  # fmt: skip
    if with_state:
        args += ["--state", str(nights["state_dir"])]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "prepared" in r.output
    (prior,) = priors
    # the second night ran against the first night's generation; without --state, a first night
    assert prior.state.generation == (1 if with_state else 0)
    assert (prior.history.n_accounts > 0) is with_state


class _Trained:
    def __init__(self, prepared: Any) -> None:
        self.prepared = prepared

    def summary_text(self) -> str:
        return f"prepared {self.prepared.events.height} events"
