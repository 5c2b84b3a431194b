"""The reports do not depend on the shard count nor on the worker count (``[engine] workers``).

One hand-made night (tests/run_fixtures.py) goes through `detector run` with 1 and several
account shards, in memory and in files, in the job's process and in two worker processes; every
report must be the same: the scored events, the account and source verdicts, the plan and the
summary's figures.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from run_fixtures import DAY, write_night, write_practitioners

from detector.config import Config, EngineConfig
from detector.errors import ConfigError
from detector.schema import C
from detector.workers import Workers, available_cores, worker_count

REPORTS = ("events.parquet", "accounts.parquet", "sources.parquet", "recommendations.parquet")


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("workers")
    geoip = root / "no-geoip"
    geoip.mkdir()
    log = write_night(root / "n1", DAY, users=60, attackers=30)
    return {"root": root, "log": log, "geoip": geoip, "practitioners": write_practitioners(root / "p.csv")}


def _run(night: dict[str, Any], name: str, shards: int, workers: int, in_memory: bool, monkeypatch) -> Path:
    import detector.detect.shards as sh
    import detector.report.events as report_events
    import detector.score.verdicts as sv
    from detector import engine, pipeline
    from detector.pipeline import run

    out = night["root"] / name
    seen: list[tuple[int, bool]] = []
    partition = sh.partition

    def recorded(*args: Any, **kw: Any) -> Any:
        parts, tables = partition(*args, **kw)
        seen.append((len(parts), parts.in_memory))
        return parts, tables

    encode = pipeline._encode_events
    encoders: list[str] = []

    def encoded(*args: Any) -> int:
        encoders.append(threading.current_thread().name)
        return encode(*args)

    with monkeypatch.context() as m:
        m.setattr(pipeline, "_encode_events", encoded)
        m.setattr(sh, "SHARD_EVENTS", math.ceil(500 / shards))  # the night has 400-500 events
        m.setattr(sh, "IN_MEMORY_EVENTS", 10**9 if in_memory else 0)
        m.setattr(sh, "SPLIT_ROWS", 97)  # the split in several blocks of rows
        m.setattr(report_events, "RANGE_EVENTS", 37)  # events.parquet put in order in several ranges
        m.setattr(sh, "partition", recorded)
        m.setattr(sv, "PREDICT_SLICE_ROWS", 1)  # the workers predict slices of the distinct paths
        m.setattr(engine, "BYTES_PER_EVENT", 1)  # the workers start beside ingestion
        result = run(
            [night["log"]], out, practitioners=night["practitioners"], geoip_dir=night["geoip"],
            cfg=Config().replace(engine={"workers": workers}),
        )  # fmt: skip
    assert result.exit_code == 0
    assert seen == [(shards, in_memory)]
    # with worker processes, events.parquet is encoded in a thread beside the plan's and the replay's tasks
    assert [name.startswith("events-writer") for name in encoders] == [workers > 1]
    return out


def _summary(out: Path) -> dict[str, Any]:
    """summary.json without what says when and how long: the figures, verdicts and measures."""
    doc = json.loads((out / "summary.json").read_text())
    drop = {"timings", "generated_at", "run", "detector", "duration_seconds", "steps", "inputs", "output"}

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if k not in drop}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(doc)


@pytest.mark.parametrize(
    ("shards", "workers", "in_memory"), [(4, 1, True), (1, 2, True), (4, 2, True), (4, 2, False)]
)
def test_reports_do_not_depend_on_shards_nor_workers(
    night: dict[str, Any], shards: int, workers: int, in_memory: bool, monkeypatch: pytest.MonkeyPatch
):
    if "base" not in night:
        night["base"] = _run(night, "base", 1, 1, True, monkeypatch)
    base = night["base"]
    out = _run(night, f"s{shards}-w{workers}-{in_memory}", shards, workers, in_memory, monkeypatch)
    for name in REPORTS:
        a, b = pl.read_parquet(base / name), pl.read_parquet(out / name)
        assert a.columns == b.columns, name
        assert a.equals(b), name
    events = pl.read_parquet(base / "events.parquet")
    assert events.height > 300 and events.get_column(C.RISK_SCORE).max() > 0.5
    assert pl.read_parquet(base / "recommendations.parquet").height > 0
    assert _summary(base) == _summary(out)


@pytest.mark.parametrize(("configured", "expected"), [(1, 1), (2, 2), (7, 7)])
def test_worker_count(configured: int, expected: int):
    assert worker_count(configured) == expected


def test_zero_workers_means_the_cores_available():
    assert worker_count(0) == available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", [-1, 4097])
def test_workers_out_of_range_are_refused(bad: int):
    with pytest.raises(ConfigError, match=r"\[engine\] workers"):
        EngineConfig(workers=bad)


def _pid(item: int, ctx: Any) -> tuple[int, int, str | None, Any]:
    return item, os.getpid(), os.environ.get("POLARS_MAX_THREADS"), ctx


def test_workers_run_tasks_in_order_with_their_context(tmp_path: Path):
    with Workers(2, tmp_path) as workers:
        assert not workers.parallel, "started when the work is known"
        workers.start(5)
        assert workers.parallel
        results = list(workers.map(_pid, range(9), {"night": 1}))
    assert [r[0] for r in results] == list(range(9))
    assert {r[1] for r in results} - {os.getpid()}, "tasks ran in worker processes"
    assert os.getpid() not in {r[1] for r in results}
    assert {r[2] for r in results} == {str(max(1, available_cores() // 2))}
    assert all(r[3] == {"night": 1} for r in results)
    assert not list(tmp_path.glob("context-*")), "the pickled context is removed after the map"


@pytest.mark.parametrize(("n", "shards"), [(1, 4), (2, 1), (4, 1)])
def test_one_worker_or_one_shard_runs_in_this_process(tmp_path: Path, n: int, shards: int):
    with Workers(n, tmp_path) as workers:
        workers.start(shards)
        assert not workers.parallel
        assert {r[1] for r in workers.map(_pid, range(3), None)} == {os.getpid()}


@pytest.mark.parametrize(
    ("configured", "size", "parallel"), [(2, 100 * 2**20, True), (2, 4096, False), (1, 100 * 2**20, False)]
)
def test_workers_start_beside_ingestion_when_the_logs_promise_several_shards(
    tmp_path: Path, configured: int, size: int, parallel: bool
):
    from detector.engine import early_workers

    log = tmp_path / "logs" / "mail.log"
    log.parent.mkdir()
    with open(log, "wb") as f:
        f.truncate(size)  # sparse: its size is what counts
    with early_workers(
        Config().replace(engine={"workers": configured}), tmp_path / "work", [log.parent]
    ) as workers:
        assert workers.parallel is parallel
        assert workers.n == (2 if parallel else configured)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_each_finish_task_receives_only_its_shards_hits(n: int):
    import numpy as np

    from detector.detect.shards import split_by_event

    event_shards = np.array([k % n for k in range(12)], dtype=np.uint32)
    per_event = pl.DataFrame({C.EVENT_ID: [0, 3, 4, 7, 11], "hit_x": [1.0, 0.0, 1.0, 1.0, 0.0]})
    parts = split_by_event(per_event, event_shards, n)
    assert len(parts) == n
    for k, part in enumerate(parts):
        assert part.columns == per_event.columns
        assert all(event_shards[i] == k for i in part.get_column(C.EVENT_ID))
    assert pl.concat(parts).sort(C.EVENT_ID).equals(per_event)


@dataclass(frozen=True)
class _Ctx:
    big: tuple[int, ...]
    step: int = 0


def _seen(item: int, ctx: _Ctx) -> tuple[int, int, int]:
    return os.getpid(), id(ctx.big), ctx.step


def test_a_context_part_is_loaded_once_per_worker_while_the_maps_share_it(tmp_path: Path):
    ctx = _Ctx(tuple(range(1000)))
    with Workers(2, tmp_path) as workers:
        workers.start(2)
        first = list(workers.map(_seen, range(6), ctx))
        parts = list(tmp_path.glob("part-*"))
        modes = {p.stat().st_mode & 0o777 for p in parts}
        second = list(workers.map(_seen, range(6), replace(ctx, step=1)))
        assert {s for _, _, s in second} == {1}
        loaded = {pid: big for pid, big, _ in first}
        assert all(loaded[pid] == big for pid, big, _ in second if pid in loaded), "not loaded again"
        list(workers.map(_seen, range(6), _Ctx(tuple(range(5)), 2)))
        assert len(parts) == 1 and not parts[0].exists(), "a part no map names any more is removed"
    assert modes == {0o600}
    assert not list(tmp_path.glob("part-*")) and not list(tmp_path.glob("context-*")), "removed at close"


def test_events_written_in_a_thread_fail_the_run_in_their_step(
    night: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    import detector.detect.shards as sh
    from detector import engine, pipeline
    from detector.errors import RunFailed

    def boom(*args: Any) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "_encode_events", boom)
    monkeypatch.setattr(sh, "SHARD_EVENTS", 200)
    monkeypatch.setattr(sh, "IN_MEMORY_EVENTS", 0)
    monkeypatch.setattr(engine, "BYTES_PER_EVENT", 1)
    out = night["root"] / "failed"
    with pytest.raises(RunFailed) as e:
        pipeline.run(
            [night["log"]], out, practitioners=night["practitioners"], geoip_dir=night["geoip"],
            cfg=Config().replace(engine={"workers": 2}),
        )  # fmt: skip
    assert e.value.step == "events"
    assert "disk full" in str(e.value)
    assert not [p for p in out.iterdir() if p.name != ".lock"], "nothing published"
