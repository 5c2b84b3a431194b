"""Publication and state as one transaction: failures and kills at every step, re-run nights, file modes."""

from __future__ import annotations

import errno
import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.config import Config
from detector.errors import StateError
from detector.pipeline import run
from detector.publish import JOURNAL, locked_out, recover_out, recover_state
from detector.report import contract
from detector.state import PENDING_FILE, STATE_FILE, load_state
from tests.run_fixtures import DAY, write_night

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("nights")
    return [write_night(d / f"n{k}", DAY + timedelta(days=k)).parent for k in range(3)]


def _run(logs: Path, out: Path, state: Path | None, **kw):
    return run([logs], out, state_dir=state, **kw)


def _reports(out: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(out / name) for name in contract.ALL_FILES if name.endswith(".parquet")}


def _published_run(out: Path) -> str:
    return json.loads((out / contract.SUMMARY_JSON).read_text())["run"]["run_id"]


def _state_run(state: Path) -> str | None:
    return json.loads((state / STATE_FILE).read_text())["run_id"]


def _snapshot(d: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(d)): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.mark.slow  # several runs of a small night (3-5 s)
def test_rerunning_a_night_reproduces_its_reports(nights, tmp_path):
    state = tmp_path / "state"
    first = _run(nights[0], tmp_path / "a", state)
    second = _run(nights[1], tmp_path / "b", state)
    learned = load_state(state).history
    again = _run(nights[1], tmp_path / "c", state)
    for name, frame in _reports(tmp_path / "b").items():
        assert _reports(tmp_path / "c")[name].equals(frame), name
    assert any("already in the state" in w for w in again.warnings)
    # the re-run replaced the latest night: its generation's parent is the first night's
    doc = json.loads((state / STATE_FILE).read_text())
    assert doc["run_id"] == again.run_id and doc["parent"] == 1
    for name, frame in load_state(state).history.items():
        assert frame.equals(learned[name]), name
    assert sorted(p.name for p in state.glob("g*")) == ["g1", "g3"], "the replaced generation is gone"
    # an older night re-run after later ones: the same reports, the state stays at the latest night
    old = _run(nights[0], tmp_path / "d", state)
    assert any("later nights are in the state" in w for w in old.warnings)
    for name, frame in _reports(tmp_path / "a").items():
        assert _reports(tmp_path / "d")[name].equals(frame), name
    assert _state_run(state) == again.run_id and first.run_id != second.run_id


@pytest.mark.slow  # several runs of a small night (3-5 s)
def test_without_the_fix_a_rerun_differs(nights, tmp_path):
    """The check above can fail: against the current state (night 2 already learned) the reports differ."""
    state = tmp_path / "state"
    _run(nights[0], tmp_path / "a", state)
    _run(nights[1], tmp_path / "b", state)
    _run(nights[1], tmp_path / "c", None)  # no history at all: the first-night reports
    differ = [n for n, f in _reports(tmp_path / "b").items() if not _reports(tmp_path / "c")[n].equals(f)]
    assert differ


@pytest.mark.slow  # several runs of a small night (3-5 s)
def test_retention_of_generations(nights, tmp_path):
    state = tmp_path / "state"
    cfg = Config().replace(state={"generations": 2})
    for logs in nights:
        _run(logs, tmp_path / "out", state, cfg=cfg)
    assert sorted(p.name for p in state.glob("g*")) == ["g2", "g3"]
    with pytest.raises(StateError, match="no longer kept"):
        _run(nights[0], tmp_path / "out", state, cfg=cfg)


def _boom(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "where"),
    [
        ("detector.state.stage_generation", "state"),  # the state cannot be saved: full disk
        ("detector.report.parquet.pq.write_table", "out"),  # a report cannot be written
        ("detector.publish.write_private", "out"),  # the journal (the commit point) cannot be written
    ],
)
def test_a_full_disk_publishes_nothing_and_exits_2(nights, tmp_path, monkeypatch, target, where):
    out, state = tmp_path / "out", tmp_path / "state"
    _run(nights[0], out, state)
    before_out, before_state = _snapshot(out), _snapshot(state)
    if target == "detector.publish.write_private":
        import detector.publish

        real = detector.publish.write_private

        def journal_full(path, text):
            return _boom() if path.name == JOURNAL else real(path, text)

        monkeypatch.setattr(target, journal_full)
    else:
        monkeypatch.setattr(target, _boom)
    res = RUNNER.invoke(app, ["run", str(nights[1]), "--out", str(out), "--state", str(state)])
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("detector: error:") and "No space left on device" in last
    assert str(tmp_path / where) in last
    assert "Traceback" not in res.output and "internal error" not in res.output
    assert _snapshot(out) == before_out and _snapshot(state) == before_state
    assert not list(out.glob(".tmp-*")) and not (state / PENDING_FILE).exists()
    assert sorted(p.name for p in state.glob("g*")) == ["g1"], "the staged generation is rolled back"


@pytest.mark.parametrize("obstacle", ["file", "read-only"])
def test_an_unwritable_out_exits_2_with_one_line(nights, tmp_path, monkeypatch, obstacle):
    out = tmp_path / "out"
    if obstacle == "file":
        out.write_text("not a directory")
    else:  # root ignores chmod: a read-only file system refuses the staging directory
        out.mkdir()
        real = os.mkdir

        def refuse(path, *a, **k):
            if ".tmp-" in str(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *a, **k)

        monkeypatch.setattr(os, "mkdir", refuse)
    res = RUNNER.invoke(app, ["run", str(nights[0]), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and str(out) in res.stderr
    assert "internal error" not in res.stderr


class Killed(BaseException):
    """SIGKILL: nothing after it runs (no except clause of the run catches it)."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "target"),
    [
        ("staging the state", "detector.state.stage_generation"),
        ("after the commit point", "detector.publish.apply"),
        ("between reports and state", "detector.publish._point_state"),
    ],
)
def test_a_kill_at_any_step_leaves_reports_and_state_of_one_night(
    nights, tmp_path, monkeypatch, step, target
):
    out, state = tmp_path / "out", tmp_path / "state"
    first = _run(nights[0], out, state)

    def kill(*args, generation=None, **kwargs):
        if generation is not None:  # half of the generation written
            (state / f"g{generation}").mkdir()
            (state / f"g{generation}" / "history.accounts.parquet").write_bytes(b"PAR1 half written")
        raise Killed

    monkeypatch.setattr(target, kill)
    monkeypatch.setattr("detector.pipeline._roll_back", lambda *a: None)  # SIGKILL: no clean-up runs
    with pytest.raises(Killed):
        _run(nights[1], out, state)
    monkeypatch.undo()
    committed = (out / JOURNAL).exists()
    assert committed == (step != "staging the state")
    assert (state / PENDING_FILE).exists() and (state / "g2").exists()
    if not committed:
        assert _published_run(out) == _state_run(state) == first.run_id
    # the next run (here: its first step) settles it, from the output or from the state side
    with locked_out(out):
        finished = recover_out(out)
    recover_state(state)
    assert not (out / JOURNAL).exists() and not (state / PENDING_FILE).exists()
    assert _published_run(out) == _state_run(state)
    assert (finished is not None) == committed
    assert sorted(p.name for p in state.glob("g*")) == (["g1", "g2"] if committed else ["g1"])


@pytest.mark.slow  # several runs of a small night (3-5 s)
def test_a_kill_after_commit_is_finished_from_the_state_side(nights, tmp_path, monkeypatch):
    """The next run may use another output directory: the state's pending note leads to the journal."""
    out, state = tmp_path / "out", tmp_path / "state"
    _run(nights[0], out, state)

    def kill(*args, **kwargs):
        raise Killed

    monkeypatch.setattr("detector.publish._point_state", kill)
    with pytest.raises(Killed):
        _run(nights[1], out, state)
    monkeypatch.undo()
    killed = _published_run(out)
    assert _state_run(state) != killed
    third = _run(nights[2], tmp_path / "elsewhere", state)
    assert _published_run(out) == killed and not (out / JOURNAL).exists()
    assert load_state(state).run_id == third.run_id
    assert json.loads((state / STATE_FILE).read_text())["parent"] == 2, (
        "night 3 ran on the killed night's state"
    )


def test_reports_and_state_are_private_whatever_the_umask(nights, tmp_path):
    old = os.umask(0o022)
    try:
        _run(nights[0], tmp_path / "reports" / "out", tmp_path / "state")
    finally:
        os.umask(old)
    for root in (tmp_path / "reports", tmp_path / "state"):
        for p in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


@pytest.mark.parametrize(
    "command", [["ingest", "LOGS", "--out", "OUT/events.parquet"], ["run", "LOGS", "--out", "OUT/r"]]
)
def test_any_command_with_an_unwritable_out_exits_2(nights, tmp_path, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory is needed")
    args = [a.replace("LOGS", str(nights[0])).replace("OUT", str(blocker)) for a in command]
    res = RUNNER.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(blocker) in lines[0] and "cannot write" in lines[0], lines


def test_ingest_output_is_private_whatever_the_umask(nights, tmp_path):
    old = os.umask(0o022)
    try:
        res = RUNNER.invoke(app, ["ingest", str(nights[0]), "--out", str(tmp_path / "events.parquet")])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    for name in ("events.parquet", "events.quarantine.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_a_night_with_a_truncated_archive_keeps_its_lines_and_says_so(nights, tmp_path):
    import gzip

    logs = tmp_path / "logs"
    logs.mkdir()
    text = (nights[0] / "mail.log").read_bytes()
    data = gzip.compress(text)
    (logs / "mail.log.1.gz").write_bytes(data[: len(data) * 3 // 4])  # a crash during rotation
    res = RUNNER.invoke(app, ["run", str(logs), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    q = pl.read_parquet(tmp_path / "out" / "quarantine.parquet").filter(reason="truncated_archive")
    assert q.height == 1 and q["source_file"][0].endswith("mail.log.1.gz")
    kept = q["line_number"][0] - 1
    assert kept > 0 and pl.read_parquet(tmp_path / "out" / "events.parquet").height > 0
    warnings = json.loads((tmp_path / "out" / contract.SUMMARY_JSON).read_text())["warnings"]
    assert any("truncated archive" in w and f"kept the {kept:,} line(s)" in w for w in warnings)
