"""Detection per account shard: bounded memory on large nights, the same results as :func:`detect`.

``detect_sharded(events, cfg, history, work_dir)`` returns the same :class:`Detection` as
``detect(events, cfg, history)`` (findings, campaigns, and events with the same ids, features and
hits) while holding only one shard of the night's events in memory at a time:

1. The enriched events are written to ``work_dir/enriched.parquet``. From a few of their columns:
   the global order (``event_id``, :func:`detector.features.windows.number`) and each event's
   shard, ``hash(local part of the account) % n`` (an account and its domain-less spelling
   share a shard, so ``typo_then_success`` finds both), with ``n`` from the event count
   (:data:`SHARD_EVENTS` per shard; 1 on small nights, which take the same path); and the
   cross-account tables of the features (:func:`detector.features.window_tables`).
2. One pass splits the events into ``enriched-<k>.parquet``.
3. Per shard (:func:`features_step`): the features, kept as ``features-<k>``; its login events'
   few columns the campaign rules and the source-scoped detectors read (:func:`source_inputs_step`).
4. Over those login columns of all shards: the campaigns (:func:`campaigns_step`) and the
   detectors of scope ``source`` (:func:`source_step`: spraying, stuffing, shared address).
5. Per shard: the campaigns applied (:func:`campaign_step`), the detectors of scope ``account``
   (:func:`account_step`) and the events in campaigns (:func:`members_step`).
6. Per shard (:func:`finish_step`): campaign sizes and per-event hits joined, features finished,
   written to ``detection-<k>.parquet`` (sorted by ``event_id``); ``Detection.shards`` lists
   them and ``Detection.events`` scans them (in shard order, not event order).

The per-shard steps are top-level functions ``step(frame, ctx) -> frame`` over polars frames with
one picklable :class:`DetectContext` (configuration, history, the global tables and what the
global steps found): the unit a worker process or a distributed backend runs. No stage is
computed anywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from detector import schema
from detector.config import Config
from detector.detect import _DURATION, Detection, _per_event
from detector.detect.campaigns import (
    CAMPAIGN_INPUT_COLUMNS,
    CampaignKeys,
    apply_campaigns,
    campaign_keys,
    campaign_sizes,
    campaign_table,
    event_campaigns,
    relink,
)
from detector.detect.findings import empty_findings, finalise
from detector.detect.registry import Configured, configure
from detector.errors import ConfigError
from detector.features import (
    FEATURE_COLUMNS,
    HIT_DETECTORS,
    SORT_KEYS,
    History,
    WindowTables,
    build_features,
    finish_features,
    window_tables,
    windows,
)
from detector.features import expressions as x
from detector.features.baseline import TRAITS
from detector.schema import C

SHARD_EVENTS = 150_000
"""Events per shard (a few hundred MiB of working memory in detection and scoring)."""

BATCH_ROWS = 8 * 1024
"""Rows per row group of a detection shard and per batch when shards are merged back in order."""

SHARD = "_shard"
ROW = "_row"

SOURCE_SCOPE_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            *CAMPAIGN_INPUT_COLUMNS,
            C.ASN,
            C.PREFIX_LEGIT_ACCOUNTS,
            C.IS_HOSTING,
            C.IS_TOR,
            "_att",
        )
    )
)
"""The login events' columns the campaign rules and the detectors of scope ``source`` read."""

CAMPAIGN_TABLE_COLUMNS: tuple[str, ...] = (
    C.SOURCE_IP,
    C.PREFIX,
    C.ASN,
    C.ACCOUNT,
    C.ACTION,
    C.OUTCOME,
    C.ATTEMPTS,
    C.TIMESTAMP,
)


def shard_count(events: int, shard_events: int = SHARD_EVENTS) -> int:
    """Shards for a night of ``events`` events (at least 1)."""
    return max(1, math.ceil(events / max(shard_events, 1)))


def shard_of(n: int) -> pl.Expr:
    """The shard of an event: a hash of its account's local part (before ``@``) modulo ``n``.

    Every event of an account (and of its spelling without the domain) lands in one shard; events
    without an account share one shard.
    """
    local = pl.col(C.ACCOUNT).str.split("@").list.first()
    return (local.hash(seed=0) % n).cast(pl.UInt32).alias(SHARD)


def _global_columns(have: list[str]) -> list[str]:
    want = [*SORT_KEYS, *windows.SOURCE_TABLE_COLUMNS, *TRAITS, C.BYTES_OUT, C.TIMESTAMP]
    return [c for c in dict.fromkeys(want) if c in have and not c.startswith("_")]


class ShardFrames:
    """One frame per shard: held in memory on small nights, else in ``<prefix>-<k>.parquet`` (lz4).

    A night of up to :data:`IN_MEMORY_EVENTS` events keeps its shards' inputs and features in
    memory: the files are written and read back once or twice each, about a fifth of detection's
    CPU time at 2 million lines. Larger nights keep one shard in memory at a time.
    """

    def __init__(self, work_dir: Path, prefix: str, n: int, in_memory: bool) -> None:
        self.paths = [work_dir / f"{prefix}-{k}.parquet" for k in range(n)]
        self.in_memory = in_memory
        self._frames: dict[int, pl.DataFrame] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def put(self, k: int, frame: pl.DataFrame) -> None:
        if self.in_memory:
            self._frames[k] = frame
        else:
            frame.write_parquet(self.paths[k], compression="lz4")

    def get(self, k: int) -> pl.DataFrame:
        return self._frames[k] if self.in_memory else pl.read_parquet(self.paths[k])

    def scan(self, k: int) -> pl.LazyFrame:
        return self._frames[k].lazy() if self.in_memory else pl.scan_parquet(self.paths[k])

    def drop(self, k: int) -> None:
        """Free shard ``k`` (its frame, or its file)."""
        if self.in_memory:
            self._frames.pop(k, None)
        else:
            self.paths[k].unlink(missing_ok=True)


IN_MEMORY_EVENTS = 600_000
"""Nights of up to this many events keep their shard frames in memory (:class:`ShardFrames`)."""


def _numbering(
    frame: pl.LazyFrame, cfg: Config, n_events: int, shard_events: int
) -> tuple[pl.DataFrame, WindowTables]:
    """Per row of ``frame`` (in its order) its ``event_id`` and shard; the cross-account tables."""
    narrow = frame.select(_global_columns(frame.collect_schema().names())).with_row_index(ROW)
    n = shard_count(n_events, shard_events)
    order = windows.number(narrow).select(ROW, C.EVENT_ID, shard_of(n)).sort(ROW).collect()
    # group-bys and a median: the order of the rows does not matter
    tables = window_tables(windows.work_columns(narrow, cfg.features.window))
    return order.select(C.EVENT_ID, SHARD), tables


def partition(
    events: pl.LazyFrame,
    cfg: Config,
    work_dir: Path,
    shard_events: int = SHARD_EVENTS,
    in_memory_events: int | None = None,
) -> tuple[ShardFrames, WindowTables]:
    """Number the events, compute the cross-account tables and split the events into shards.

    Returns the shards (:class:`ShardFrames` ``enriched-<k>``, each event with its ``event_id``)
    and the :class:`~detector.features.WindowTables`. A night of more than ``in_memory_events``
    (default :data:`IN_MEMORY_EVENTS`) events is written once to ``work_dir/enriched.parquet`` and
    split from there in batches.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    n_events = int(events.select(pl.len()).collect().item())
    n = shard_count(n_events, shard_events)
    limit = IN_MEMORY_EVENTS if in_memory_events is None else in_memory_events
    if n_events <= limit:
        frame = events.collect()
        order, tables = _numbering(frame.lazy(), cfg, n_events, shard_events)
        frame = frame.hstack(order.get_columns())
        del order
        parts = frame.partition_by(SHARD, as_dict=True, include_key=False)
        empty = frame.drop(SHARD).clear()
        del frame
        shards = ShardFrames(work_dir, "enriched", n, in_memory=True)
        for k in range(n):
            shards.put(k, parts.pop((k,), empty))
        return shards, tables
    enriched = work_dir / "enriched.parquet"
    events.sink_parquet(enriched)
    order, tables = _numbering(pl.scan_parquet(enriched), cfg, n_events, shard_events)
    ids, shard = order.get_column(C.EVENT_ID), order.get_column(SHARD)
    del order
    shards = ShardFrames(work_dir, "enriched", n, in_memory=False)
    writers: dict[int, pq.ParquetWriter] = {}
    offset = 0
    try:
        for batch in pq.ParquetFile(enriched).iter_batches(batch_size=256 * 1024):
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            df = df.with_columns(
                ids.slice(offset, df.height).alias(C.EVENT_ID), shard.slice(offset, df.height).alias(SHARD)
            )
            offset += df.height
            for (k,), part in df.partition_by(SHARD, as_dict=True, include_key=False).items():
                table = part.to_arrow()
                if k not in writers:
                    writers[k] = pq.ParquetWriter(shards.paths[k], table.schema, compression="lz4")
                writers[k].write_table(table)
        empty = pl.scan_parquet(enriched).with_columns(ids.clear().alias(C.EVENT_ID)).clear()
        for k, path in enumerate(shards.paths):
            if k not in writers:
                empty.collect().write_parquet(path)
    finally:
        for w in writers.values():
            w.close()
    enriched.unlink()
    return shards, tables


def _run(frame: pl.DataFrame, configured: dict[str, Configured]) -> list[pl.DataFrame]:
    plans = [finalise(c.detector.fn(frame.lazy(), c.params), c.detector) for c in configured.values()]
    return pl.collect_all(plans) if plans else []


def _annotate(frame: pl.DataFrame, per_event: pl.DataFrame) -> pl.DataFrame:
    empty_list = pl.lit([], pl.List(pl.String))
    hits = frame.select(C.EVENT_ID).join(per_event, on=C.EVENT_ID, how="left", maintain_order="left")
    return frame.hstack(
        hits.select(
            pl.col(C.DETECTORS).fill_null(empty_list),
            pl.col(C.TECHNIQUES).fill_null(empty_list),
            *[pl.col(f"hit_{name}").fill_null(0.0) for name in HIT_DETECTORS],
        ).get_columns()
    )


def _finish(annotated: pl.DataFrame) -> pl.DataFrame:
    out = finish_features(annotated.lazy())
    keep = [c for c in out.collect_schema().names() if c not in FEATURE_COLUMNS] + list(FEATURE_COLUMNS)
    return out.select(keep).collect()


def _scoped(cfg: Config, source: bool) -> dict[str, Configured]:
    """The enabled detectors of scope ``source`` (``source=True``) or of the other scopes."""
    return {n: c for n, c in configure(cfg).items() if c.enabled and (c.detector.scope == "source") is source}


@dataclass(frozen=True)
class DetectContext:
    """What a per-shard detection step reads besides its shard (picklable; frames are Arrow-friendly).

    Built once per night by :func:`detect_sharded` and extended between the global steps: the
    campaign keys after the source step, the campaign sizes and per-event hits before the finish.

    Attributes:
        cfg: the effective configuration.
        history: earlier nights' per-account baseline.
        tables: the cross-account tables of the features (:func:`partition`).
        keys: tonight's campaigns (:func:`source_step`), relinked to the state's.
        sizes: sources and accounts per campaign, over all shards (:func:`campaign_sizes`).
        per_event: per event, the detectors that fired and their hits (``detect._per_event``).
        known_campaigns: earlier nights' campaigns (the state's), for :func:`relink`.
    """

    cfg: Config
    history: History
    tables: WindowTables
    keys: CampaignKeys | None = None
    sizes: pl.DataFrame | None = None
    per_event: pl.DataFrame | None = None
    known_campaigns: pl.DataFrame | None = None


def _need(value: object, what: str) -> Any:
    if value is None:
        raise ValueError(f"this step needs the context's {what}: run the global step before it")
    return value


def features_step(frame: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Step 1 per account shard: its enriched events (with ``event_id``) -> their features."""
    return build_features(frame.lazy(), ctx.cfg.features, ctx.history, ctx.tables).collect()


def source_inputs_step(features: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Per account shard: the few columns of its login events the source-keyed rules read."""
    return features.filter(x.is_login()).select(SOURCE_SCOPE_COLUMNS)


def campaign_step(features: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Per account shard: the features with each event's ``campaign`` (null outside campaigns)."""
    keys = _need(ctx.keys, "campaign keys")
    return features.hstack([event_campaigns(features, keys).get_column(C.CAMPAIGN)])


def account_step(campaigned: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Per account shard (:func:`campaign_step`'s frame): the findings of the detectors of scope
    ``account`` (``findings.empty_findings()``'s columns)."""
    found = _run(campaigned, _scoped(ctx.cfg, source=False))
    return pl.concat(found) if found else empty_findings()


def members_step(campaigned: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Per account shard (:func:`campaign_step`'s frame): its events in campaigns, the columns
    :func:`campaign_sizes` and :func:`campaign_table` read."""
    return campaigned.filter(pl.col(C.CAMPAIGN).is_not_null()).select(C.CAMPAIGN, *CAMPAIGN_TABLE_COLUMNS)


def finish_step(features: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Last step per account shard: campaigns with their sizes, per-event hits, finished features."""
    keys = _need(ctx.keys, "campaign keys")
    sizes = _need(ctx.sizes, "campaign sizes")
    per_event = _need(ctx.per_event, "per-event hits")
    return _finish(_annotate(apply_campaigns(features, keys, sizes), per_event))


def campaigns_step(logins: pl.DataFrame, ctx: DetectContext) -> CampaignKeys:
    """Global: tonight's campaigns over the login events of every shard (:func:`source_inputs_step`),
    renamed to the earlier campaigns they continue (``ctx.known_campaigns``)."""
    configured = configure(ctx.cfg)
    params = {n: c.params for n, c in configured.items()}
    enabled = {n: c.enabled for n, c in configured.items()}
    return relink(campaign_keys(logins, params, enabled), ctx.known_campaigns, logins)


def source_step(logins: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """The findings of the detectors of scope ``source`` over login events (with the campaigns of
    ``ctx.keys``)."""
    keys = _need(ctx.keys, "campaign keys")
    logins = logins.hstack([event_campaigns(logins, keys).get_column(C.CAMPAIGN)])
    found = _run(logins, _scoped(ctx.cfg, source=True))
    return pl.concat(found) if found else empty_findings()


def read_batches(
    path: Path, batch_rows: int = BATCH_ROWS, columns: Sequence[str] | None = None
) -> Iterator[pl.DataFrame]:
    """A Parquet file as frames of at most ``batch_rows`` rows, read one row group at a time.

    ``columns``: only those of these the file has (all by default).
    """
    file = pq.ParquetFile(path)
    if columns is not None:
        columns = [c for c in file.schema_arrow.names if c in set(columns)]
    for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
        df = pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        if df.height:
            yield df


def merge_sorted_batches(
    shards: list[Iterator[pl.DataFrame]], key: str = C.EVENT_ID
) -> Iterator[pl.DataFrame]:
    """Merge streams of frames, each sorted by a unique ``key``, into one sorted stream of frames.

    Holds one batch per stream: each round emits every buffered row up to the smallest of the
    streams' last buffered keys (no stream can still bring a smaller one) and refills the streams
    it emptied.
    """
    buffers: dict[int, pl.DataFrame] = {}
    for i, it in enumerate(shards):
        first = next(it, None)
        if first is not None:
            buffers[i] = first
    while buffers:
        bound = min(buf.get_column(key)[-1] for buf in buffers.values())
        parts = []
        for i, buf in list(buffers.items()):
            n = int(buf.get_column(key).search_sorted(bound, side="right"))
            parts.append(buf.slice(0, n))
            if n < buf.height:
                buffers[i] = buf.slice(n)
            else:
                refill = next(shards[i], None)
                if refill is None:
                    del buffers[i]
                else:
                    buffers[i] = refill
        yield pl.concat(parts).sort(key)


def detect_sharded(
    events: pl.LazyFrame | pl.DataFrame,
    cfg: Config,
    history: History | None,
    work_dir: Path | str,
    *,
    shard_events: int | None = None,
    known_campaigns: pl.DataFrame | None = None,
) -> Detection:
    """:func:`detector.detect.detect`, one account shard at a time (module docstring).

    Intermediate files live in ``work_dir``; the returned ``Detection.events`` scans
    ``work_dir/detection-<k>.parquet``, so keep ``work_dir`` until the events are written.
    ``known_campaigns`` (the state's) give tonight's campaigns their earlier ids (:func:`relink`).
    """
    if not _DURATION.match(cfg.features.window):
        raise ConfigError(
            f"[features] window must be a duration such as 6h or 1d, got {cfg.features.window!r}"
        )
    lf = events.lazy()
    schema.check(lf.collect_schema(), schema.ENRICHED_SCHEMA, what="enriched events")
    work = Path(work_dir)

    inputs, tables = partition(lf, cfg, work, shard_events or SHARD_EVENTS)
    ctx = DetectContext(cfg, history or History.empty(), tables, known_campaigns=known_campaigns)
    features = ShardFrames(work, "features", len(inputs), inputs.in_memory)
    logins = []
    for k in range(len(inputs)):
        frame = features_step(inputs.get(k), ctx)
        inputs.drop(k)
        features.put(k, frame)
        logins.append(source_inputs_step(frame, ctx))
        del frame
    # in shard order: the campaign rules and the source-scoped detectors do not depend on row order
    login_events = pl.concat(logins)
    del logins
    ctx = replace(ctx, keys=campaigns_step(login_events, ctx))
    found = [source_step(login_events, ctx)]
    del login_events

    members = []
    for k in range(len(features)):
        frame = campaign_step(features.get(k), ctx)
        found.append(account_step(frame, ctx))
        members.append(members_step(frame, ctx))
        del frame
    member_events = pl.concat(members)
    ctx = replace(ctx, sizes=campaign_sizes(member_events))
    campaigns = campaign_table(member_events)
    del members, member_events
    findings = pl.concat(found).sort("start", "detector", "entity", "finding_id")
    ctx = replace(ctx, per_event=_per_event(findings))

    out = []
    for k in range(len(features)):
        det = finish_step(features.get(k), ctx)
        features.drop(k)
        path = work / f"detection-{k}.parquet"
        det.write_parquet(path, compression="lz4", row_group_size=BATCH_ROWS)
        del det
        out.append(path)
    return Detection(events=pl.scan_parquet(out), findings=findings, campaigns=campaigns, shards=tuple(out))


__all__ = [
    "BATCH_ROWS",
    "IN_MEMORY_EVENTS",
    "SHARD_EVENTS",
    "SOURCE_SCOPE_COLUMNS",
    "DetectContext",
    "ShardFrames",
    "account_step",
    "campaign_step",
    "campaigns_step",
    "detect_sharded",
    "features_step",
    "finish_step",
    "members_step",
    "merge_sorted_batches",
    "partition",
    "read_batches",
    "shard_count",
    "shard_of",
    "source_inputs_step",
    "source_step",
]
