"""Risk scores and verdicts per event, account and source, with reasons in plain words.

:func:`score` turns a :class:`~detector.detect.Detection` into :class:`Scores`:

- events get ``risk_score``: the login model's calibrated probability, or without a model the
  rule-based fallback :func:`~detector.score.rules.rule_event_risk` (from the severities of the
  detectors that fired; :mod:`detector.score.rules`);
- accounts (``schema.ACCOUNT_SCHEMA``) get a compromise risk from the account model (fallback: the
  riskiest successful login), a verdict from ``cfg.scoring`` thresholds, reasons and counts
  (:mod:`detector.score.accounts`, :mod:`detector.score.takeover`, :mod:`detector.score.reasons`);
- sources (``schema.SOURCE_SCHEMA``) get a maliciousness risk from the source model (fallback: the
  riskiest event from the address), a verdict, their campaign and whether legitimate users share them
  (:mod:`detector.score.sources`).

:func:`score` and :func:`score_shards` (one account shard in memory) run those steps in order.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from detector.config import Config
from detector.detect.shards import BATCH_ROWS, merge_sorted_batches, read_batches
from detector.parts import parquet_rows, write_parts
from detector.schema import C
from detector.schema import Verdict as Verdict
from detector.score import aggregates as agg
from detector.score import hosted as hosted_rule
from detector.score.accounts import account_table
from detector.score.io import Model
from detector.score.rules import RISK, RULE, _final, check_event_features, event_rule_risk, score_events
from detector.score.sources import (
    SOURCE_INPUTS,
    SourceBuckets,
    read_bucket,
    sorted_sources,
    source_buckets,
    source_context,
    source_rows,
    source_table,
    split_by_source,
)
from detector.score.takeover import _unshared_malicious, takeover_sprayers
from detector.workers import WORKER_THREADS, Workers, in_process


@dataclass(frozen=True)
class Scores:
    """Scored events (``risk_score`` added), accounts and sources; ``model_id`` is ``None`` for rules."""

    events: pl.DataFrame | pl.LazyFrame
    """A frame, or (scored per shard) a lazy merge of the scored shards in event order (it holds
    them all in memory when collected: stream :meth:`batches` instead)."""
    accounts: pl.DataFrame
    sources: pl.DataFrame
    model_id: str | None = None
    shards: tuple[tuple[Path, Path], ...] = ()
    """Scored per shard: each shard's detection file and its row-aligned risk file."""
    combine: bool = False
    """Scored per shard: whether ``risk_score`` is the larger of the model's and the rules' risk."""

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
        """The scored events in event order, a few thousand rows at a time (one batch per shard in memory).

        ``columns``: only those of these the events have (all by default; ``event_id`` always).
        """
        if not self.shards:
            events = self.events.lazy()
            if columns is not None:
                events = events.select(_present(events.collect_schema().names(), columns))
            yield from events.collect().iter_slices(BATCH_ROWS)
            return
        # a merge round emits about one batch per shard: their sum stays near MERGE_ROWS rows
        rows = max(1024, MERGE_ROWS // len(self.shards))
        yield from merge_sorted_batches(
            [_scored_batches(d, r, self.combine, rows, columns) for d, r in self.shards]
        )


def _present(have: list[str], columns: Sequence[str]) -> list[str]:
    wanted = {C.EVENT_ID, *columns}
    return [c for c in have if c in wanted]


MERGE_ROWS = 64 * 1024
"""Rows held from all shards together while they are merged back into event order."""


def _scored_batches(
    detection: Path, risk: Path, combine: bool, rows: int, columns: Sequence[str] | None = None
) -> Iterator[pl.DataFrame]:
    risks = pl.read_parquet(risk)
    offset = 0
    for batch in read_batches(detection, rows, None if columns is None else [C.EVENT_ID, *columns]):
        scored = batch.hstack(risks.slice(offset, batch.height).get_columns())
        offset += batch.height
        yield _final(scored.lazy(), combine).drop(RULE, hosted_rule.HOSTED, strict=False).collect()


def _rule_columns(model: Model | None, combine: bool) -> list[str]:
    """The columns the rules' risk lives in: beside the model's (combined), or alone without a model."""
    return [RULE] if combine else ([RISK, RULE] if model is None else [])


def _hosted(events: pl.LazyFrame, sources: pl.DataFrame, cfg: Config, columns: list[str]) -> pl.DataFrame:
    """The night's :func:`hosted.hosted_takeovers` (none when the rules' risk is not used)."""
    if not columns:
        return pl.DataFrame(schema=hosted_rule.HOSTED_SCHEMA)
    attackers = _unshared_malicious(sources).select(C.SOURCE_IP, C.ASN)
    return hosted_rule.hosted_takeovers(events, attackers, cfg).collect()


def _rescore_sources(
    events: pl.LazyFrame,
    sources: pl.DataFrame,
    hosted: pl.DataFrame,
    model: Model | None,
    cfg: Config,
    names: tuple[str, ...],
    combine: bool,
) -> pl.DataFrame:
    """``sources`` with the rows of the hosted takeovers' addresses scored again (a source's row
    reads only its own events, so the other rows stand)."""
    ips = events.join(hosted.lazy(), on=C.EVENT_ID, how="semi").select(C.SOURCE_IP).unique()
    again = source_table(
        events.join(ips, on=C.SOURCE_IP, how="semi").collect(), model, cfg, names, combine=combine
    )
    kept = sources.join(again.select(C.SOURCE_IP), on=C.SOURCE_IP, how="anti")
    return pl.concat([kept, again]).sort(RISK, C.SOURCE_IP, descending=[True, False])


def score(
    detection: Any,
    model: Model | None,
    cfg: Config,
    *,
    combine: bool = True,
    workers: Workers | None = None,
) -> Scores:
    """Score a detection: per-event risk, per-account and per-source verdicts with reasons.

    With a model, each level's risk is the larger of the model's probability and the rules' risk
    (:func:`rule_event_risk`; an account's riskiest successful login, a source's riskiest event)
    counted only on events whose address GeoIP could not place (no ASN): there the model's network
    features are all zero, a case it was not trained on, and strong detector evidence must not be
    silenced. ``combine=False`` keeps the model's alone. The account and source models always read
    the login model's own risk, as in training.

    Args:
        detection: ``detector.detect.Detection`` (``.events`` LazyFrame or DataFrame).
        model: A loaded :class:`Model`, or ``None`` for the rule-based fallback.
        cfg: Configuration; ``cfg.scoring`` holds the verdict thresholds.
        combine: Combine the model with the rules (default) or not.
        workers: run the per-shard steps of a sharded detection (default: in this process).
    """
    if getattr(detection, "shards", ()):
        return score_shards(detection.shards, model, cfg, combine=combine, workers=workers)
    events = detection.events
    events = events.collect() if isinstance(events, pl.LazyFrame) else events
    names = tuple(model.detector_names) if model is not None else _fired_names(events)
    events = score_events(events, model, cfg)
    combine = combine and model is not None
    sources = source_table(events, model, cfg, names, combine=combine)
    columns = _rule_columns(model, combine)
    hosted = _hosted(events.lazy(), sources, cfg, columns)
    if hosted.height:
        events = hosted_rule.mark(events.lazy(), hosted, cfg, columns).collect()
        sources = _rescore_sources(events.lazy(), sources, hosted, model, cfg, names, combine)
    accounts = account_table(events, sources, model, cfg, names, combine=combine)
    final = _final(events.lazy(), combine).drop(RULE, hosted_rule.HOSTED, strict=False).collect()
    return Scores(
        events=final, accounts=accounts, sources=sources, model_id=model.model_id if model else None
    )


SCORE_INPUTS: tuple[str, ...] = (
    C.EVENT_ID,
    C.ACTION,
    C.OUTCOME,
    C.ATTEMPTS,
    C.CAMPAIGN,
    C.DETECTORS,
    C.IP_LEGIT_ACCOUNTS,
    C.ASN,
)
"""Columns :func:`score_events` reads besides the model's event features."""


@dataclass(frozen=True)
class ScoreContext:
    """What a per-shard scoring step reads besides its shard (picklable; frames are Arrow-friendly).

    Built by :func:`score_shards` and extended between its global steps.

    Attributes:
        cfg: the effective configuration.
        model: the loaded model (``None``: the rules).
        combine: ``risk_score`` is the larger of the model's and the rules' risk.
        names: the detectors the account and source tables count.
        wanted: the columns :func:`risk_inputs_step` keeps.
        path_risks: the event model's positive probability (``_positive``) per distinct path
            through its trees (``w0``...), over all shards (:func:`path_risks`).
        hosted: hosted addresses whose events' rules' risk is raised (:mod:`detector.score.hosted`).
        sources: the source table (all shards).
        context: per-source context of the account table (``aggregates.source_context``).
        sprayers: the takeover sprayers (:func:`takeover_sprayers`).
    """

    cfg: Config
    model: Model | None
    combine: bool
    names: tuple[str, ...]
    wanted: tuple[str, ...]
    path_risks: pl.DataFrame | None = None
    hosted: pl.DataFrame | None = None
    sources: pl.DataFrame | None = None
    context: pl.DataFrame | None = None
    sprayers: pl.DataFrame | None = None

    @property
    def thresholds(self) -> list[np.ndarray] | None:
        """The event model's split thresholds (``None``: no model, or not plain boosted trees)."""
        return self.model.event.thresholds() if self.model is not None else None


def _need(value: Any, what: str) -> Any:
    if value is None:
        raise ValueError(f"this step needs the context's {what}: run the global step before it")
    return value


def risk_inputs_step(detection: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard: the columns of its detection the event risk reads."""
    return detection.select([c for c in dict.fromkeys(ctx.wanted) if c in detection.columns])


def rule_risk_step(inputs: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard, without distinct paths (no model, or not plain trees): ``risk_score`` and
    ``_rule_risk`` of each event (:func:`score_events`)."""
    return score_events(inputs, ctx.model, ctx.cfg).select(RISK, RULE)


def paths_step(inputs: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard, with a tree model: each event's rules' risk and path through the trees
    (``_rule_risk``, ``w0``...; :meth:`~detector.score.model.CalibratedBoostingClassifier.paths`)."""
    model = _need(ctx.model, "model")
    thresholds = _need(ctx.thresholds, "model's thresholds")
    check_event_features(inputs, model)
    rule = pl.Series(RULE, event_rule_risk(inputs, model, ctx.cfg), dtype=pl.Float64)
    paths, inverse = model.event.paths(agg.event_matrix(inputs, model.event_features), thresholds)
    return paths[inverse].insert_column(0, rule)


def path_risks(
    paths: Sequence[pl.DataFrame], ctx: ScoreContext, workers: Workers | None = None
) -> pl.DataFrame:
    """Global: the event model's positive probability per distinct path of all shards' events
    (each shard's :func:`paths_step` frame, or its distinct paths).

    The event model predicts once per distinct path over all shards together (the shards of a
    night share most paths: 151,597 per-shard paths but 90,137 distinct ones over 4 shards of
    532,873 events). A prediction is row-wise, so ``workers`` predict slices of the distinct paths
    (:func:`predict_step`) with the same result as one prediction.
    """
    _need(ctx.model, "model")
    every = pl.concat([p.drop(RULE, strict=False).unique() for p in paths]).unique()
    workers = workers or in_process()
    parts = 1 if not workers.parallel else max(1, min(workers.n, every.height // PREDICT_SLICE_ROWS))
    size = -(-every.height // parts)
    slices = [every.slice(i * size, size) for i in range(parts)]
    positive = np.concatenate([np.zeros(0), *workers.map(predict_step, slices, ctx)])
    return every.with_columns(pl.Series("_positive", positive, dtype=pl.Float64))


PREDICT_SLICE_ROWS = 4096
"""Fewest distinct paths per worker's slice (:func:`path_risks`): fewer are predicted in one."""


def predict_step(codes: pl.DataFrame, ctx: ScoreContext) -> np.ndarray:
    """The event model's positive probability of the paths ``codes`` (a slice of :func:`path_risks`'
    distinct paths): on :data:`PREDICT_THREADS` threads in the job's process, on a worker's share
    of the cores in a worker."""
    threads = int(os.environ.get(WORKER_THREADS, PREDICT_THREADS))
    model = _need(ctx.model, "model")
    return model.event.predict_paths(codes, _need(ctx.thresholds, "thresholds"), threads=threads)[:, -1]


def path_risk_step(paths: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard (:func:`paths_step`'s frame): ``risk_score`` and ``_rule_risk`` of each event."""
    table = _need(ctx.path_risks, "path risks")
    codes = [c for c in paths.columns if c != RULE]
    positive = paths.select(codes).join(table, on=codes, how="left", maintain_order="left")
    return pl.DataFrame(
        [
            pl.Series(RISK, np.clip(positive.get_column("_positive").to_numpy(), 0.0, 1.0), dtype=pl.Float64),
            paths.get_column(RULE),
        ]
    )


def hosted_step(scored: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard (``event_id``, ``risk_score``, ``_rule_risk``): the risk columns with the hosted
    addresses' events' risk raised and the mark (:func:`detector.score.hosted.mark`)."""
    hosted = _need(ctx.hosted, "hosted addresses")
    columns = _rule_columns(ctx.model, ctx.combine)
    marked = hosted_rule.mark(scored.lazy().select(C.EVENT_ID, RISK, RULE), hosted, ctx.cfg, columns)
    return marked.drop(C.EVENT_ID).collect()


def account_step(scored: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per account shard (its detection beside its risk columns): its accounts' rows."""
    return account_table(
        scored,
        _need(ctx.sources, "source table"),
        ctx.model,
        ctx.cfg,
        ctx.names,
        combine=ctx.combine,
        context=_need(ctx.context, "source context"),
        sprayers=_need(ctx.sprayers, "takeover sprayers"),
    )


Pair = tuple[Path, Path]
"""A scored shard: its detection file and its row-aligned risk file."""


def rule_risk_task(pair: Pair, ctx: ScoreContext) -> None:
    """Per shard, without distinct paths: its risk file (:func:`rule_risk_step`)."""
    detection, risk = pair
    inputs = risk_inputs_step(_shard_inputs(detection, ctx.wanted), ctx)
    rule_risk_step(inputs, ctx).write_parquet(risk, compression="lz4")


def paths_task(pair: Pair, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard, with a tree model: its events' paths kept in its risk file; its distinct paths."""
    detection, risk = pair
    paths = paths_step(risk_inputs_step(_shard_inputs(detection, ctx.wanted), ctx), ctx)
    paths.write_parquet(risk, compression="lz4")
    return paths.drop(RULE).unique()


def path_risk_task(pair: Pair, ctx: ScoreContext) -> None:
    """Per shard: its risk file from the paths :func:`paths_task` kept there (:func:`path_risk_step`)."""
    risk = pair[1]
    path_risk_step(pl.read_parquet(risk), ctx).write_parquet(risk, compression="lz4")


def hosted_task(pair: Pair, ctx: ScoreContext) -> None:
    """Per shard: its risk file with the hosted addresses' events raised and marked (:func:`hosted_step`)."""
    detection, risk = pair
    scored = pl.concat(
        [pl.read_parquet(detection, columns=[C.EVENT_ID]), pl.read_parquet(risk, columns=[RISK, RULE])],
        how="horizontal",
    )
    hosted_step(scored, ctx).write_parquet(risk, compression="lz4")


def source_rows_task(pieces: tuple[Path, ...], ctx: ScoreContext) -> pl.DataFrame:
    """Per source bucket (its pieces of every shard: :func:`split_source_buckets`): the source
    table's rows of its addresses (:func:`sources.source_rows`)."""
    return source_rows(read_bucket(pieces), ctx.model, ctx.cfg, ctx.names, combine=ctx.combine)


def account_task(pair: Pair, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard: its accounts' rows (:func:`account_step`)."""
    detection, risk = pair
    return account_step(pl.concat([pl.read_parquet(detection), pl.read_parquet(risk)], how="horizontal"), ctx)


def write_shard_risks(pairs: tuple[Pair, ...], ctx: ScoreContext, workers: Workers | None = None) -> None:
    """Write each shard's ``risk_score`` and ``_rule_risk`` (as :func:`score_events`) to its risk file.

    With a tree model, each shard's paths (:func:`paths_step`) are kept in its risk file until
    the one prediction over all shards' distinct paths (:func:`path_risks`) gives their risks.
    """
    workers = workers or in_process()
    if ctx.thresholds is None:
        list(workers.map(rule_risk_task, pairs, ctx))
        return
    distinct = list(workers.map(paths_task, pairs, ctx))
    ctx = replace(ctx, path_risks=path_risks(distinct, ctx, workers))
    del distinct
    list(workers.map(path_risk_task, pairs, ctx))


PREDICT_THREADS = 2
"""Threads of the one event-model prediction over a night's distinct paths."""


def _shard_inputs(path: Path, wanted: Sequence[str]) -> pl.DataFrame:
    scan = pl.scan_parquet(path)
    have = scan.collect_schema().names()
    return scan.select([c for c in dict.fromkeys(wanted) if c in have]).collect()


def _scored_scans(pairs: tuple[tuple[Path, Path], ...]) -> list[pl.LazyFrame]:
    """Each shard's detection file beside its row-aligned risk file."""
    return [pl.concat([pl.scan_parquet(d), pl.scan_parquet(r)], how="horizontal") for d, r in pairs]


def score_shards(
    shards: tuple[Path, ...],
    model: Model | None,
    cfg: Config,
    *,
    combine: bool = True,
    workers: Workers | None = None,
) -> Scores:
    """:func:`score` of a detection held per account shard (``Detection.shards``), one shard in memory.

    Event risk is row-wise: each shard's risk columns are computed from the few columns they read
    and written beside it (``risk-<shard file>``, row-aligned with it). The source table is one
    group-by over the few columns it reads of all shards; accounts are scored per shard (an
    account's events are in one shard) with the per-source context and the takeover sprayers
    computed over all events. ``Scores.events`` merges the scored shards back into event order,
    lazily (it is streamed into ``events.parquet``).

    The per-shard work is the steps ``step(frame, ctx) -> frame`` with one picklable
    :class:`ScoreContext` (:func:`risk_inputs_step`, :func:`rule_risk_step` or :func:`paths_step`
    then :func:`path_risk_step`, :func:`hosted_step`, :func:`account_step`); the global steps
    between them (:func:`path_risks`, the source table, the hosted addresses, the source context,
    the takeover sprayers) extend the context. ``workers`` run the per-shard tasks (default: in
    this process); the result does not depend on them.
    """
    names = tuple(model.detector_names) if model is not None else _fired_names(pl.scan_parquet(list(shards)))
    combine = combine and model is not None
    wanted = (*SCORE_INPUTS, *(model.event_features if model is not None else ()))
    ctx = ScoreContext(cfg, model, combine, names, wanted)
    pairs = tuple((path, path.with_name("risk-" + path.name)) for path in shards)
    workers = workers or in_process()
    write_shard_risks(pairs, ctx, workers)
    scored = _scored_scans(pairs)
    every = pl.concat(scored)
    # the per-source tables one source bucket at a time: each holds a bucket's groups
    rows = parquet_rows(d for d, _ in pairs)
    # with worker processes, at least one bucket a worker: each worker builds its buckets' rows
    buckets = max(source_buckets(rows), workers.n if workers.parallel else 1)
    by_bucket = split_source_buckets(pairs, buckets, workers)  # each shard read once, not once a bucket
    if by_bucket is not None and workers.parallel:
        sources = sorted_sources(workers.map(source_rows_task, by_bucket.paths, ctx))
    else:
        sources = source_table(
            every if by_bucket is None else by_bucket, model, cfg, names, combine=combine, buckets=buckets
        )
    hosted = _hosted(every, sources, cfg, _rule_columns(model, combine))
    if hosted.height:  # the risk files take the raised rules' risk and the mark
        list(workers.map(hosted_task, pairs, replace(ctx, hosted=hosted)))
        scored = _scored_scans(pairs)
        every = pl.concat(scored)
        sources = _rescore_sources(every, sources, hosted, model, cfg, names, combine)
        if by_bucket is not None:  # the source context reads the raised risk
            by_bucket.remove()
            by_bucket = split_source_buckets(pairs, buckets, workers)
    ctx = replace(
        ctx,
        sources=sources,
        context=source_context(every if by_bucket is None else by_bucket, buckets),
        sprayers=takeover_sprayers(every, sources, cfg).collect(),
    )
    if by_bucket is not None:
        by_bucket.remove()
    accounts = pl.concat(list(workers.map(account_task, pairs, ctx))).sort(
        RISK, C.ACCOUNT, descending=[True, False]
    )
    events = functools.reduce(
        lambda a, b: a.merge_sorted(b, key=C.EVENT_ID),
        [_final(s, combine).drop(RULE, hosted_rule.HOSTED, strict=False) for s in scored],
    )
    return Scores(
        events=events,
        accounts=accounts,
        sources=sources,
        model_id=model.model_id if model else None,
        shards=pairs,
        combine=combine,
    )


def source_pieces_task(item: tuple[Pair, int], buckets: int) -> tuple[Path, ...]:
    """Per shard (its detection beside its risk columns): its rows of the per-source tables' columns
    by source bucket (:func:`~detector.score.sources.split_by_source`), written to
    ``sources-<j>-<k>.parquet`` beside its detection file (every bucket's, empty or not)."""
    (detection, risk), k = item
    frame = pl.concat(
        [_shard_inputs(detection, SOURCE_INPUTS), _shard_inputs(risk, SOURCE_INPUTS)], how="horizontal"
    )
    return tuple(
        write_parts(
            split_by_source(frame, buckets), lambda j: detection.with_name(f"sources-{j}-{k}.parquet")
        )
    )


def split_source_buckets(pairs: tuple[Pair, ...], buckets: int, workers: Workers) -> SourceBuckets | None:
    """The scored shards' rows split by source bucket, each shard read once (in ``workers``); ``None``
    for one bucket (the per-source tables read the shards)."""
    if buckets <= 1:
        return None
    pieces = list(workers.map(source_pieces_task, [(pair, k) for k, pair in enumerate(pairs)], buckets))
    return SourceBuckets(tuple(tuple(shard[j] for shard in pieces) for j in range(buckets)))


def _fired_names(events: pl.DataFrame | pl.LazyFrame) -> tuple[str, ...]:
    names = events.lazy().select(pl.col(C.DETECTORS).explode().drop_nulls().unique()).collect()
    return tuple(sorted(names.to_series().to_list()))
