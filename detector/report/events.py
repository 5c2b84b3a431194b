"""The scored events of ``events.parquet``, finished per account shard in the worker processes.

A night scored per shard (``Scores.shards``: each shard's detection file beside its risk file)
becomes one ``scored-<k>.parquet`` per shard (:func:`scored_shard_task`): its events with their
final ``risk_score``, conformed to the report's columns, sorted by ``event_id``. The job's process
only reads them back in event order, each range of event ids put in order in the workers
(:func:`in_order`), and writes the one ``events.parquet``;
the later per-shard steps (the plan's tables, the replay) read the same files in the workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from detector.detect.shards import BATCH_ROWS, read_batches
from detector.schema import C, conform
from detector.score import hosted
from detector.score.rules import RULE, _final
from detector.score.verdicts import Pair, Scores
from detector.workers import Workers


@dataclass(frozen=True)
class EventsContext:
    """What :func:`scored_shard_task` reads besides its shard: the report's columns and whether
    ``risk_score`` is the larger of the model's and the rules' risk (``Scores.combine``)."""

    schema: pl.Schema
    combine: bool


@dataclass(frozen=True)
class ScoredShard:
    """A shard's finished events (``path``), how many, and their first and last time stamp."""

    path: Path
    rows: int
    start: datetime | None
    end: datetime | None


def scored_shard_step(scored: pl.DataFrame, ctx: EventsContext) -> pl.DataFrame:
    """Per shard (its detection beside its risk columns): the report's rows (``Scores.batches``')."""
    final = _final(scored.lazy(), ctx.combine).drop(RULE, hosted.HOSTED, strict=False)
    return conform(final, ctx.schema).collect()


def scored_shard_task(item: tuple[Pair, Path], ctx: EventsContext) -> ScoredShard:
    """Per shard: :func:`scored_shard_step` written to ``scored-<k>.parquet`` (lz4, row groups of
    ``BATCH_ROWS`` like the detection files, so the merge reads the same batches)."""
    (detection, risk), target = item
    have = pq.read_schema(detection).names
    wanted = {C.EVENT_ID, *ctx.schema.names()}
    frame = pl.concat(
        [pl.read_parquet(detection, columns=[c for c in have if c in wanted]), pl.read_parquet(risk)],
        how="horizontal",
    )
    out = scored_shard_step(frame, ctx)
    del frame
    out.write_parquet(target, compression="lz4", row_group_size=BATCH_ROWS)
    ts = out.get_column(C.TIMESTAMP)
    return ScoredShard(target, out.height, ts.min(), ts.max())  # type: ignore[arg-type]


def scored_shards(
    scores: Scores, schema: pl.Schema, work_dir: Path, workers: Workers
) -> tuple[ScoredShard, ...]:
    """Every shard's finished events (``work_dir/scored-<k>.parquet``), computed in ``workers``."""
    ctx = EventsContext(schema, scores.combine)
    items = [(pair, work_dir / f"scored-{k}.parquet") for k, pair in enumerate(scores.shards)]
    return tuple(workers.map(scored_shard_task, items, ctx))


RANGE_EVENTS = 256 * 1024
"""Events per range of ``event_id`` that a worker puts in event order (:func:`range_task`)."""


def range_task(item: tuple[tuple[Path, ...], int, int, Path], ctx: None) -> Path:
    """Per range ``[first, last)`` of ``event_id``: its events from every shard's file, in event
    order, written to ``target`` (lz4; the shards' files are sorted by ``event_id``, so their
    row groups' statistics skip the others)."""
    shards, first, last, target = item
    ids = pl.col(C.EVENT_ID)
    part = pl.scan_parquet(list(shards)).filter((ids >= first) & (ids < last)).collect().sort(C.EVENT_ID)
    part.write_parquet(target, compression="lz4", row_group_size=BATCH_ROWS)
    return target


def in_order(shards: Sequence[ScoredShard], work_dir: Path, workers: Workers) -> Iterator[pl.DataFrame]:
    """The shards' events in event order, a few thousand rows at a time: each range of
    :data:`RANGE_EVENTS` event ids put in order in the workers (the ids number the events from 0
    without a gap), read back here one range after the other. Each range's file is removed once read."""
    total = sum(s.rows for s in shards)
    paths = tuple(s.path for s in shards)
    items = (
        (paths, first, min(first + RANGE_EVENTS, total), work_dir / f"events-{j}.parquet")
        for j, first in enumerate(range(0, total, RANGE_EVENTS))
    )
    for path in workers.map(range_task, items, None):
        yield from read_batches(path)
        path.unlink()


def window(shards: Sequence[ScoredShard]) -> tuple[datetime | None, datetime | None]:
    """The first and last time stamp of the shards' events."""
    starts = [s.start for s in shards if s.start is not None]
    ends = [s.end for s in shards if s.end is not None]
    return (min(starts) if starts else None), (max(ends) if ends else None)


__all__ = [
    "EventsContext",
    "ScoredShard",
    "in_order",
    "range_task",
    "scored_shard_step",
    "scored_shard_task",
    "scored_shards",
    "window",
]
