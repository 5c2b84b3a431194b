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
3. Per shard: the features (``build_features`` with the global tables), written to
   ``features-<k>.parquet``; its login events' few columns the campaign rules and the
   source-scoped detectors read are kept.
4. Over those login columns of all shards: the campaigns (``campaign_keys``) and the detectors of
   scope ``source`` (spraying, stuffing, shared address).
5. Per shard: the campaigns applied and the detectors of scope ``account``.
6. Per shard: campaign sizes and per-event hits joined, features finished, written to
   ``detection-<k>.parquet`` (sorted by ``event_id``); ``Detection.shards`` lists them and
   ``Detection.events`` scans them (in shard order, not event order).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from detector import schema
from detector.config import Config
from detector.detect import _DURATION, Detection, _per_event
from detector.detect.campaigns import (
    CAMPAIGN_INPUT_COLUMNS,
    apply_campaigns,
    campaign_keys,
    campaign_sizes,
    campaign_table,
    event_campaigns,
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


def partition(
    events: pl.LazyFrame, cfg: Config, work_dir: Path, shard_events: int = SHARD_EVENTS
) -> tuple[list[Path], WindowTables]:
    """Number the events, compute the cross-account tables and split the events into shard files.

    Returns the shard files (``enriched-<k>.parquet``, each with ``event_id``) and the
    :class:`~detector.features.WindowTables`.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    enriched = work_dir / "enriched.parquet"
    events.sink_parquet(enriched)
    scan = pl.scan_parquet(enriched)
    names = scan.collect_schema().names()
    narrow = scan.select(_global_columns(names)).with_row_index(ROW)
    n_events = int(scan.select(pl.len()).collect().item())
    n = shard_count(n_events, shard_events)
    order = windows.number(narrow).select(ROW, C.EVENT_ID, shard_of(n)).sort(ROW).collect()
    # group-bys and a median: the order of the rows does not matter
    tables = window_tables(windows.work_columns(narrow, cfg.features.window))
    ids, shards = order.get_column(C.EVENT_ID), order.get_column(SHARD)
    del order
    paths = [work_dir / f"enriched-{k}.parquet" for k in range(n)]
    writers: dict[int, pq.ParquetWriter] = {}
    offset = 0
    try:
        for batch in pq.ParquetFile(enriched).iter_batches(batch_size=256 * 1024):
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            df = df.with_columns(
                ids.slice(offset, df.height).alias(C.EVENT_ID), shards.slice(offset, df.height).alias(SHARD)
            )
            offset += df.height
            for (k,), part in df.partition_by(SHARD, as_dict=True, include_key=False).items():
                table = part.to_arrow()
                if k not in writers:
                    writers[k] = pq.ParquetWriter(paths[k], table.schema, compression="lz4")
                writers[k].write_table(table)
        empty = pl.scan_parquet(enriched).with_columns(pl.lit(0, pl.UInt64).alias(C.EVENT_ID)).clear()
        for k, path in enumerate(paths):
            if k not in writers:
                empty.collect().write_parquet(path)
    finally:
        for w in writers.values():
            w.close()
    enriched.unlink()
    return paths, tables


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


def _shard_frames(paths: list[Path]) -> Iterator[tuple[int, pl.DataFrame]]:
    for k, path in enumerate(paths):
        yield k, pl.read_parquet(path)


def read_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """A Parquet file as frames of at most ``batch_rows`` rows, read one row group at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
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
) -> Detection:
    """:func:`detector.detect.detect`, one account shard at a time (module docstring).

    Intermediate files live in ``work_dir``; the returned ``Detection.events`` scans
    ``work_dir/detection-<k>.parquet``, so keep ``work_dir`` until the events are written.
    """
    if not _DURATION.match(cfg.features.window):
        raise ConfigError(
            f"[features] window must be a duration such as 6h or 1d, got {cfg.features.window!r}"
        )
    configured = configure(cfg)
    params = {n: c.params for n, c in configured.items()}
    enabled = {n: c.enabled for n, c in configured.items()}
    by_source = {n: c for n, c in configured.items() if c.enabled and c.detector.scope == "source"}
    by_account = {n: c for n, c in configured.items() if c.enabled and c.detector.scope != "source"}
    lf = events.lazy()
    schema.check(lf.collect_schema(), schema.ENRICHED_SCHEMA, what="enriched events")
    work = Path(work_dir)
    history = history or History.empty()

    inputs, tables = partition(lf, cfg, work, shard_events or SHARD_EVENTS)
    feature_paths = [work / f"features-{k}.parquet" for k in range(len(inputs))]
    logins = []
    for k, path in enumerate(inputs):
        frame = build_features(pl.scan_parquet(path), cfg.features, history, tables).collect()
        frame.write_parquet(feature_paths[k], compression="lz4")
        logins.append(frame.filter(x.is_login()).select(SOURCE_SCOPE_COLUMNS))
        del frame
        path.unlink()
    # in shard order: the campaign rules and the source-scoped detectors do not depend on row order
    login_events = pl.concat(logins)
    del logins
    keys = campaign_keys(login_events, params, enabled)
    login_events = login_events.hstack([event_campaigns(login_events, keys).get_column(C.CAMPAIGN)])
    found = _run(login_events, by_source)
    del login_events

    members = []
    for _, frame in _shard_frames(feature_paths):
        campaign = event_campaigns(frame, keys).get_column(C.CAMPAIGN)
        frame = frame.hstack([campaign])
        found.extend(_run(frame, by_account))
        members.append(frame.filter(campaign.is_not_null()).select(C.CAMPAIGN, *CAMPAIGN_TABLE_COLUMNS))
    member_events = pl.concat(members)
    sizes = campaign_sizes(member_events)
    campaigns = campaign_table(member_events)
    del members, member_events
    findings = (
        pl.concat(found).sort("start", "detector", "entity", "finding_id") if found else empty_findings()
    )
    per_event = _per_event(findings)

    out = []
    for k, frame in _shard_frames(feature_paths):
        det = _finish(_annotate(apply_campaigns(frame, keys, sizes), per_event))
        del frame
        path = work / f"detection-{k}.parquet"
        det.write_parquet(path, compression="lz4", row_group_size=BATCH_ROWS)
        out.append(path)
        feature_paths[k].unlink()
    return Detection(events=pl.scan_parquet(out), findings=findings, campaigns=campaigns, shards=tuple(out))


__all__ = [
    "BATCH_ROWS",
    "SHARD_EVENTS",
    "SOURCE_SCOPE_COLUMNS",
    "detect_sharded",
    "merge_sorted_batches",
    "partition",
    "read_batches",
    "shard_count",
    "shard_of",
]
