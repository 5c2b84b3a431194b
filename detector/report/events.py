"""The scored events of ``events.parquet``, finished per account shard in the worker processes.

A night scored per shard (``Scores.shards``: each shard's detection file beside its risk file)
becomes one ``scored-<k>.parquet`` per shard (:func:`scored_shard_task`): its events with their
final ``risk_score``, conformed to the report's columns, sorted by ``event_id``. The job's process
only merges them back into event order (:func:`merged`) and writes the one ``events.parquet``;
the later per-shard steps (the plan's tables, the replay) read the same files in the workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from detector.detect.shards import BATCH_ROWS, merge_sorted_batches, read_batches
from detector.schema import C, conform
from detector.score import hosted
from detector.score.rules import RULE, _final
from detector.score.verdicts import MERGE_ROWS, Pair, Scores
from detector.workers import Workers


@dataclass(frozen=True)
class EventsContext:
    """What :func:`scored_shard_task` reads besides its shard: the report's columns and whether
    ``risk_score`` is the larger of the model's and the rules' risk (``Scores.combine``)."""

    schema: pl.Schema
    combine: bool


@dataclass(frozen=True)
class ScoredShard:
    """A shard's finished events (``path``) and its first and last time stamp (``None``: none)."""

    path: Path
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
    return ScoredShard(target, ts.min(), ts.max())  # type: ignore[arg-type]


def scored_shards(
    scores: Scores, schema: pl.Schema, work_dir: Path, workers: Workers
) -> tuple[ScoredShard, ...]:
    """Every shard's finished events (``work_dir/scored-<k>.parquet``), computed in ``workers``."""
    ctx = EventsContext(schema, scores.combine)
    items = [(pair, work_dir / f"scored-{k}.parquet") for k, pair in enumerate(scores.shards)]
    return tuple(workers.map(scored_shard_task, items, ctx))


def merged(shards: Sequence[ScoredShard]) -> Iterator[pl.DataFrame]:
    """The shards' events in event order, about ``MERGE_ROWS`` rows held at a time (the batches
    ``Scores.batches`` gives)."""
    rows = max(1024, MERGE_ROWS // max(1, len(shards)))
    return merge_sorted_batches([read_batches(s.path, rows) for s in shards])


def window(shards: Sequence[ScoredShard]) -> tuple[datetime | None, datetime | None]:
    """The first and last time stamp of the shards' events."""
    starts = [s.start for s in shards if s.start is not None]
    ends = [s.end for s in shards if s.end is not None]
    return (min(starts) if starts else None), (max(ends) if ends else None)


__all__ = [
    "EventsContext",
    "ScoredShard",
    "merged",
    "scored_shard_step",
    "scored_shard_task",
    "scored_shards",
    "window",
]
