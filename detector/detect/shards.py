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
2. The events are split into their shards per block of rows (:func:`split_task`, in the workers
   while this process numbers them; small nights: in memory).
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

import itertools
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from detector import schema
from detector.config import Config
from detector.detect import _DURATION, Detection, per_event_hits
from detector.detect.campaigns import (
    CAMPAIGN_INPUT_COLUMNS,
    KEY,
    LABEL,
    NODE,
    CampaignCandidates,
    CampaignKeys,
    apply_campaigns,
    campaign_candidates,
    campaign_sizes,
    campaign_table,
    campaigns_from,
    components,
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
from detector.parts import PART, hash_part, split_rows, write_parts
from detector.schema import C
from detector.workers import Workers, in_process

SHARD_EVENTS = 150_000
"""Events per shard (a few hundred MiB of working memory in detection and scoring)."""

TABLE_PART_EVENTS = 1_000_000
"""Events per part of the cross-account tables' group-bys (:func:`detector.features.window_tables`:
each part holds its own distinct (bucket, account, source) pairs, about half its events)."""

BATCH_ROWS = 8 * 1024
"""Rows per row group of a detection shard and per batch when shards are merged back in order."""

SHARD = PART
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
    return hash_part(local, n).alias(SHARD)


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
        self.networks: pl.DataFrame | None = None
        """Enriched events (:func:`partition`): the source networks (:func:`source_networks`)."""
        self.event_shards: np.ndarray | None = None
        """Enriched events (:func:`partition`): each event's shard, by ``event_id`` (:func:`_event_shards`)."""
        self.pieces: list[Pieces] | None = None
        """Enriched events split per block (:func:`partition`): each shard's pieces."""

    def __len__(self) -> int:
        return len(self.paths)

    def put(self, k: int, frame: pl.DataFrame) -> None:
        if self.in_memory:
            self._frames[k] = frame
        else:
            frame.write_parquet(self.paths[k], compression="lz4")

    def get(self, k: int) -> pl.DataFrame:
        if self.pieces is not None:
            return self.pieces[k].frame()
        return self._frames[k] if self.in_memory else pl.read_parquet(self.paths[k])

    def scan(self, k: int) -> pl.LazyFrame:
        if self.pieces is not None:
            return self.get(k).lazy()
        return self._frames[k].lazy() if self.in_memory else pl.scan_parquet(self.paths[k])

    def take(self, k: int) -> Shard:
        """Shard ``k`` for a task: its frame (forgotten here: the task owns it), its file or its pieces."""
        if self.pieces is not None:
            return self.pieces[k]
        return self._frames.pop(k) if self.in_memory else self.paths[k]

    def target(self, k: int) -> Path | None:
        """Where a task stores shard ``k``: ``None`` in memory (the task returns the frame)."""
        return None if self.in_memory else self.paths[k]

    def keep(self, k: int, shard: Shard) -> None:
        """Shard ``k`` as a task stored it (:meth:`target`)."""
        if isinstance(shard, pl.DataFrame):
            self._frames[k] = shard

    def drop(self, k: int) -> None:
        """Free shard ``k`` (its frame, its file or its pieces)."""
        if self.pieces is not None:
            _free(self.pieces[k])
        elif self.in_memory:
            self._frames.pop(k, None)
        else:
            self.paths[k].unlink(missing_ok=True)


def load(shard: Shard) -> pl.DataFrame:
    """A shard's frame."""
    if isinstance(shard, Pieces):
        return shard.frame()
    return shard if isinstance(shard, pl.DataFrame) else pl.read_parquet(shard)


def store(frame: pl.DataFrame, target: Path | None, **options: Any) -> Shard:
    """``frame`` kept in memory (``target`` is ``None``) or written to ``target`` (lz4)."""
    if target is None:
        return frame
    frame.write_parquet(target, compression="lz4", **options)
    return target


def _free(shard: Shard) -> None:
    for path in shard.paths if isinstance(shard, Pieces) else [shard] if isinstance(shard, Path) else []:
        path.unlink(missing_ok=True)


IN_MEMORY_EVENTS = 600_000
"""Nights of up to this many events keep their shard frames in memory (:class:`ShardFrames`)."""


def _time_ranges(keys: pl.LazyFrame, chunk_events: int) -> list[pl.Expr]:
    """Filters splitting the events into ranges of whole seconds of about ``chunk_events`` events
    each (more where one second holds more), in time order, events without a time stamp last."""
    ts = pl.col(C.TIMESTAMP)
    second = ts.dt.truncate("1s")
    counts = (
        keys.filter(ts.is_not_null())
        .group_by(second.alias("_s"))
        .agg(pl.len().alias("_n"))
        .collect(engine="streaming")
        .sort("_s")
    )
    bounds, total = [], 0
    for start, size in counts.iter_rows():
        if total >= chunk_events:
            bounds.append(start)
            total = 0
        total += size
    edges = [None, *bounds, None]
    ranges = []
    for lo, hi in itertools.pairwise(edges):
        cond = ts.is_not_null()
        if lo is not None:
            cond = cond & (ts >= lo)
        if hi is not None:
            cond = cond & (ts < hi)
        ranges.append(cond)
    return [*ranges, ts.is_null()]


def event_order(frame: pl.LazyFrame, n_events: int, n: int, chunk_events: int) -> pl.DataFrame:
    """Per row of ``frame`` (in its order): its ``event_id`` (:func:`windows.number`'s) and shard.

    The same numbering as one sort of every event, sorting at most about ``chunk_events`` at a time:
    the sort keys start with the time stamp, so ranges of whole seconds, each sorted on its own
    (stable, like the whole sort) and numbered after the ranges before it, give every event its
    place. Only the two result columns of all events are held (12 bytes an event).
    """
    keys = frame.select(*SORT_KEYS).with_row_index(ROW)
    if n_events <= chunk_events:
        return (
            windows.number(keys)
            .select(ROW, C.EVENT_ID, shard_of(n))
            .sort(ROW)
            .select(C.EVENT_ID, SHARD)
            .collect()
        )
    ids = np.zeros(n_events, dtype=np.uint64)
    shards = np.zeros(n_events, dtype=np.uint32)
    offset = 0
    for cond in _time_ranges(keys, chunk_events):
        part = windows.number(keys.filter(cond)).select(ROW, C.EVENT_ID, shard_of(n)).collect()
        rows = part.get_column(ROW).to_numpy()
        ids[rows] = part.get_column(C.EVENT_ID).to_numpy() + np.uint64(offset)
        shards[rows] = part.get_column(SHARD).to_numpy()
        offset += part.height
    return pl.DataFrame({C.EVENT_ID: ids, SHARD: shards})


def _numbering(
    frame: pl.LazyFrame, cfg: Config, n_events: int, shard_events: int
) -> tuple[pl.DataFrame, WindowTables, pl.DataFrame]:
    """Per row of ``frame`` (in its order) its ``event_id`` and shard; the cross-account tables;
    the source networks (:func:`source_networks`)."""
    narrow = frame.select(_global_columns(frame.collect_schema().names()))
    order = event_order(narrow, n_events, shard_count(n_events, shard_events), cfg.engine.sort_events)
    # group-bys and a median: the order of the rows does not matter
    parts = shard_count(n_events, TABLE_PART_EVENTS)
    tables = window_tables(windows.work_columns(narrow, cfg.features.window), parts)
    return order, tables, source_networks(narrow)


NETWORK = "_network"


def _node() -> pl.Expr:
    return pl.coalesce(pl.col(C.PREFIX), pl.col(C.SOURCE_IP)).alias(NODE)


def source_networks(events: pl.LazyFrame) -> pl.DataFrame:
    """Per prefix (or address without one), its network: the prefixes linked by shared ASNs.

    The source-keyed rules group login events by address, /24 (/64) prefix and ASN; events of one
    network share all three, so a source shard made of whole networks (:func:`source_shard_of`)
    gives each rule every event of its groups. A narrow global step: distinct (prefix, ASN) pairs.
    """
    pairs = (
        events.select(_node(), ("a:" + pl.col(C.ASN).cast(pl.String)).alias(KEY))
        .filter(pl.col(NODE).is_not_null())
        .unique()
        # streamed: the distinct pairs, not every event's address columns, in memory (the
        # components take the smallest node, whatever the rows' order)
        .collect(engine="streaming")
    )
    linked = components(pairs.drop_nulls())
    return (
        pairs.select(NODE)
        .unique()
        .join(linked, on=NODE, how="left")
        .select(NODE, pl.coalesce(LABEL, NODE).alias(NETWORK))
    )


def source_shard_of(logins: pl.DataFrame, networks: pl.DataFrame, n: int) -> pl.Series:
    """The source shard of each login event: a hash of its network modulo ``n`` (events without
    an address share one shard)."""
    network = (
        logins.select(_node()).join(networks, on=NODE, how="left", maintain_order="left").get_column(NETWORK)
    )
    return hash_part(network, n).alias(SHARD)


def partition(
    events: pl.LazyFrame,
    cfg: Config,
    work_dir: Path,
    shard_events: int = SHARD_EVENTS,
    in_memory_events: int | None = None,
    workers: Workers | None = None,
) -> tuple[ShardFrames, WindowTables]:
    """Number the events, compute the cross-account tables and split the events into shards.

    Returns the shards (:class:`ShardFrames` ``enriched-<k>``, each event with its ``event_id``;
    ``networks``: :func:`source_networks`) and the :class:`~detector.features.WindowTables`. A night of more than ``in_memory_events``
    (default :data:`IN_MEMORY_EVENTS`) events is written once to ``work_dir/enriched.parquet`` and
    split from there per block of rows in ``workers`` (started here for the shards; default: this
    process), while this process numbers the events.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    n_events = int(events.select(pl.len()).collect().item())
    n = shard_count(n_events, shard_events)
    limit = IN_MEMORY_EVENTS if in_memory_events is None else in_memory_events
    if n_events <= limit:
        frame = events.collect()
        order, tables, networks = _numbering(frame.lazy(), cfg, n_events, shard_events)
        frame = frame.hstack(order.get_columns())
        event_shards = _event_shards(order, n)
        del order
        parts = split_rows(frame.drop(SHARD), frame.get_column(SHARD), n)
        del frame
        shards = ShardFrames(work_dir, "enriched", n, in_memory=True)
        for k, part in enumerate(parts):
            shards.put(k, part)
        shards.networks, shards.event_shards = networks, event_shards
        return shards, tables
    enriched = work_dir / "enriched.parquet"
    events.sink_parquet(enriched)
    workers = (workers or in_process()).start(n)
    blocks = [(a, min(SPLIT_ROWS, n_events - a)) for a in range(0, n_events, SPLIT_ROWS)]
    ctx = SplitContext(enriched, work_dir, n)
    if workers.parallel:
        # the split per block of rows runs in the workers while this process numbers the events
        with ThreadPoolExecutor(1, thread_name_prefix="split") as pool:
            splitting = pool.submit(lambda: list(workers.map(split_task, blocks, ctx)))
            try:
                order, tables, networks = _numbering(pl.scan_parquet(enriched), cfg, n_events, shard_events)
            finally:
                pieces = splitting.result()
    else:
        pieces = list(workers.map(split_task, blocks, ctx))
        order, tables, networks = _numbering(pl.scan_parquet(enriched), cfg, n_events, shard_events)
    enriched.unlink()
    ids, shard = order.get_column(C.EVENT_ID), order.get_column(SHARD)
    event_shards = _event_shards(order, n)
    del order
    # each shard's event ids, in the order of its rows (the blocks' order)
    rows = np.argsort(shard.to_numpy(), kind="stable")
    bounds = np.searchsorted(shard.to_numpy()[rows], np.arange(n + 1))
    shards = ShardFrames(work_dir, "enriched", n, in_memory=False)
    shards.networks, shards.event_shards = networks, event_shards
    shards.pieces = [
        Pieces(tuple(block[k] for block in pieces), ids.gather(rows[bounds[k] : bounds[k + 1]]))
        for k in range(n)
    ]
    return shards, tables


SPLIT_ROWS = 256 * 1024
"""Rows of the enriched events per block of the split (:func:`split_task`)."""


@dataclass(frozen=True)
class SplitContext:
    """What :func:`split_task` reads besides its block: the enriched events' file, where the pieces
    go, the shard count."""

    enriched: Path
    work_dir: Path
    shards: int


def split_task(block: tuple[int, int], ctx: SplitContext) -> list[Path]:
    """Per block of rows (first row, rows) of the enriched events: its rows of each shard
    (:func:`shard_of`), in their order, written to ``enriched-<k>-<first row>.parquet`` (every
    shard's, empty or not)."""
    first, height = block
    frame = pl.scan_parquet(ctx.enriched).slice(first, height).collect()
    parts = split_rows(frame, shard_of(ctx.shards), ctx.shards)
    del frame
    return write_parts(parts, lambda k: ctx.work_dir / f"enriched-{k}-{first}.parquet")


@dataclass(frozen=True)
class Pieces:
    """An account shard of the enriched events as the split left it: its pieces, in the order of
    its rows, and their ``event_id`` (:func:`load` puts them together)."""

    paths: tuple[Path, ...]
    ids: pl.Series

    def frame(self) -> pl.DataFrame:
        frame = pl.concat([pl.read_parquet(p) for p in self.paths])
        if frame.height != self.ids.len():
            raise RuntimeError(f"a shard's pieces hold {frame.height} events, its ids {self.ids.len()}")
        return frame.with_columns(self.ids.alias(C.EVENT_ID))


Shard = pl.DataFrame | Path | Pieces
"""A shard as a task receives or returns it: its frame, its Parquet file, or the split's pieces."""


def _event_shards(order: pl.DataFrame, n: int) -> np.ndarray:
    """Each event's shard by ``event_id`` (the ids number the events from 0 without a gap); 2 bytes
    an event up to 65,536 shards."""
    out = np.zeros(order.height, dtype=np.uint16 if n <= 1 << 16 else np.uint32)
    out[order.get_column(C.EVENT_ID).to_numpy()] = order.get_column(SHARD).to_numpy()
    return out


def split_by_event(rows: pl.DataFrame, event_shards: np.ndarray, n: int) -> list[pl.DataFrame]:
    """Rows keyed by ``event_id`` split by the shard of their event (the findings' hits: each
    :func:`finish_task` gets its own shard's, instead of every task receiving every event's)."""
    if n == 1:
        return [rows]
    shard = pl.Series(SHARD, event_shards[rows.get_column(C.EVENT_ID).to_numpy()], dtype=pl.UInt32)
    return split_rows(rows, shard, n)


_FINDING = "_finding"


def split_hits(findings: pl.DataFrame, event_shards: np.ndarray, n: int) -> Iterator[pl.DataFrame]:
    """:func:`split_by_event` of the findings' hits (:func:`~detector.detect.finding_hits`), the same
    parts, one at a time: until they are split, each hit is its finding's row number and its event
    (12 bytes), not also its detector's, technique's and kind's names (a night's hits are several
    per event)."""
    hits = (
        findings.lazy()
        .select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias(_FINDING), pl.col("event_ids").alias(C.EVENT_ID)
        )
        .explode(C.EVENT_ID)
        .drop_nulls(C.EVENT_ID)
        .collect()
    )
    names = findings.select("detector", "technique", "kind")
    parts = split_by_event(hits, event_shards, n)
    del hits
    for part in parts:
        yield names.select(pl.all().gather(part.get_column(_FINDING))).hstack([part.get_column(C.EVENT_ID)])


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
        per_event: per event, the detectors that fired and their hits (``detect._per_event``; a finish
            task sets its own shard's, :func:`finish_task`).
        known_campaigns: earlier nights' campaigns (the state's), for :func:`relink`.
        networks: the source networks (:func:`source_networks`) that make the source shards.
        source_shards: how many source shards the login events are split into.
    """

    cfg: Config
    history: History
    tables: WindowTables
    keys: CampaignKeys | None = None
    sizes: pl.DataFrame | None = None
    per_event: pl.DataFrame | None = None
    known_campaigns: pl.DataFrame | None = None
    networks: pl.DataFrame | None = None
    source_shards: int = 1


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


def _rule_inputs(cfg: Config) -> tuple[dict[str, Any], dict[str, bool]]:
    configured = configure(cfg)
    return {n: c.params for n, c in configured.items()}, {n: c.enabled for n, c in configured.items()}


BY_CAMPAIGN = frozenset({"credential_stuffing"})
"""Detectors of scope ``source`` that judge a campaign as a whole (its events span networks):
they run once over the events of tonight's campaigns (:func:`campaign_detectors_step`)."""


def candidates_step(logins: pl.DataFrame, ctx: DetectContext) -> CampaignCandidates:
    """Per source shard (its login events: whole networks): the campaign rules' candidate rows."""
    return campaign_candidates(logins, *_rule_inputs(ctx.cfg))


def campaigns_step(candidates: CampaignCandidates, ctx: DetectContext) -> CampaignKeys:
    """Global, over the candidate rows of every source shard (narrow): tonight's campaigns, renamed
    to the earlier campaigns they continue (``ctx.known_campaigns``)."""
    keys = campaigns_from(candidates, *_rule_inputs(ctx.cfg))
    return relink(keys, ctx.known_campaigns, candidates.prefixes())


def campaigned_step(logins: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Per source shard: its login events with their ``campaign``."""
    keys = _need(ctx.keys, "campaign keys")
    return logins.hstack([event_campaigns(logins, keys).get_column(C.CAMPAIGN)])


def source_step(campaigned: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Per source shard (:func:`campaigned_step`'s frame): the findings of the detectors of scope
    ``source`` but those of :data:`BY_CAMPAIGN`."""
    by_source = {n: c for n, c in _scoped(ctx.cfg, source=True).items() if n not in BY_CAMPAIGN}
    found = _run(campaigned, by_source)
    return pl.concat(found) if found else empty_findings()


def campaign_inputs_step(campaigned: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Per source shard (:func:`campaigned_step`'s frame): its events in a campaign."""
    return campaigned.filter(pl.col(C.CAMPAIGN).is_not_null())


def campaign_detectors_step(members: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Global, over the login events in campaigns of every source shard: the findings of the
    detectors of :data:`BY_CAMPAIGN`."""
    by_campaign = {n: c for n, c in _scoped(ctx.cfg, source=True).items() if n in BY_CAMPAIGN}
    found = _run(members, by_campaign)
    return pl.concat(found) if found else empty_findings()


def split_sources(logins: pl.DataFrame, ctx: DetectContext) -> list[pl.DataFrame]:
    """An account shard's login columns split into the ``ctx.source_shards`` source shards."""
    n = ctx.source_shards
    if n == 1:
        return [logins]
    return split_rows(logins, source_shard_of(logins, _need(ctx.networks, "source networks"), n), n)


def features_task(item: tuple[Shard, Path | None], ctx: DetectContext) -> tuple[Shard, list[Shard]]:
    """Per account shard: enriched events -> features (stored), and its login columns per source
    shard (in memory, or ``logins-<k>-<j>.parquet`` beside the features)."""
    shard, target = item
    frame = features_step(load(shard), ctx)
    _free(shard)
    parts = split_sources(source_inputs_step(frame, ctx), ctx)
    if target is None:
        return frame, list(parts)
    stored = store(frame, target)
    k = target.stem.rsplit("-", 1)[-1]
    return stored, [store(p, target.with_name(f"logins-{k}-{j}.parquet")) for j, p in enumerate(parts)]


def _logins(parts: list[Shard]) -> pl.DataFrame:
    return pl.concat([load(p) for p in parts])


def candidates_task(parts: list[Shard], ctx: DetectContext) -> CampaignCandidates:
    """Per source shard (its parts from every account shard): :func:`candidates_step`."""
    return candidates_step(_logins(parts), ctx)


def source_task(parts: list[Shard], ctx: DetectContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per source shard: the source detectors' findings and its events in campaigns; its parts' files
    are removed."""
    campaigned = campaigned_step(_logins(parts), ctx)
    for p in parts:
        _free(p)
    return source_step(campaigned, ctx), campaign_inputs_step(campaigned, ctx)


def account_task(shard: Shard, ctx: DetectContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per shard: the findings of the account-scoped detectors and the events in campaigns."""
    frame = campaign_step(load(shard), ctx)
    return account_step(frame, ctx), members_step(frame, ctx)


def finish_task(item: tuple[Shard, Path, Shard], ctx: DetectContext) -> Path:
    """Per shard: the finished detection, written to its file (sorted by ``event_id``); the item
    carries the findings' hits on the shard's events (:func:`split_by_event`; a frame, or its file
    on a night in files, removed here), which become its per-event hits here, the context none."""
    shard, target, hits = item
    det = finish_step(load(shard), replace(ctx, per_event=per_event_hits(load(hits).lazy())))
    _free(shard)
    _free(hits)
    return Path(store(det, target, row_group_size=BATCH_ROWS))


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
    workers: Workers | None = None,
) -> Detection:
    """:func:`detector.detect.detect`, one account shard at a time (module docstring).

    Intermediate files live in ``work_dir``; the returned ``Detection.events`` scans
    ``work_dir/detection-<k>.parquet``, so keep ``work_dir`` until the events are written.
    ``known_campaigns`` (the state's) give tonight's campaigns their earlier ids (:func:`relink`).
    ``workers`` run the per-shard tasks (default: in this process); the result does not depend on them.
    """
    if not _DURATION.match(cfg.features.window):
        raise ConfigError(
            f"[features] window must be a duration such as 6h or 1d, got {cfg.features.window!r}"
        )
    lf = events.lazy()
    schema.check(lf.collect_schema(), schema.ENRICHED_SCHEMA, what="enriched events")
    work = Path(work_dir)

    workers = workers or in_process()
    inputs, tables = partition(lf, cfg, work, shard_events or SHARD_EVENTS, workers=workers)
    ctx = DetectContext(cfg, history or History.empty(), tables, known_campaigns=known_campaigns)
    n = len(inputs)
    workers.start(n)
    ctx = replace(ctx, networks=inputs.networks, source_shards=n)
    features = ShardFrames(work, "features", n, inputs.in_memory)
    by_source: list[list[Shard]] = [[] for _ in range(n)]
    items = ((inputs.take(k), features.target(k)) for k in range(n))
    for k, (frame, parts) in enumerate(workers.map(features_task, items, ctx)):
        features.keep(k, frame)
        for j, part in enumerate(parts):
            by_source[j].append(part)
    # per source shard (whole networks): the campaigns' candidates, then, linked globally, the
    # campaigns; the source-scoped detectors per source shard, those judging whole campaigns over
    # the events in campaigns. None of them depends on row order.
    candidates = CampaignCandidates.concat(list(workers.map(candidates_task, by_source, ctx)))
    ctx = replace(ctx, keys=campaigns_step(candidates, ctx))
    del candidates
    found, in_campaigns = [], []
    for source_findings, members in workers.map(source_task, by_source, ctx):
        found.append(source_findings)
        in_campaigns.append(members)
    del by_source
    found.append(campaign_detectors_step(pl.concat(in_campaigns), ctx))
    del in_campaigns

    members = []
    shards = (features.get(k) if features.in_memory else features.paths[k] for k in range(n))
    for account_findings, campaign_members in workers.map(account_task, shards, ctx):
        found.append(account_findings)
        members.append(campaign_members)
    member_events = pl.concat(members)
    ctx = replace(ctx, sizes=campaign_sizes(member_events))
    campaigns = campaign_table(member_events)
    del members, member_events
    findings = pl.concat(found).sort("start", "detector", "entity", "finding_id")
    split = split_hits(findings, _need(inputs.event_shards, "event shards"), n)
    # on a night in files each finish task reads its own, and each is written as it is split
    hits: list[Shard] = (
        list(split)
        if features.in_memory
        else [store(h, work / f"hits-{k}.parquet") for k, h in enumerate(split)]
    )

    targets = [work / f"detection-{k}.parquet" for k in range(n)]
    items = ((features.take(k), targets[k], hits[k]) for k in range(n))
    out = list(workers.map(finish_task, items, ctx))
    return Detection(events=pl.scan_parquet(out), findings=findings, campaigns=campaigns, shards=tuple(out))


__all__ = [
    "BATCH_ROWS",
    "IN_MEMORY_EVENTS",
    "SHARD_EVENTS",
    "SOURCE_SCOPE_COLUMNS",
    "DetectContext",
    "ShardFrames",
    "account_step",
    "campaign_detectors_step",
    "campaign_inputs_step",
    "campaign_step",
    "campaigned_step",
    "campaigns_step",
    "candidates_step",
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
    "source_networks",
    "source_shard_of",
    "source_step",
    "split_by_event",
    "split_hits",
]
