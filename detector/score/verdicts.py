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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from detector.config import Config
from detector.detect.shards import BATCH_ROWS, merge_sorted_batches, read_batches
from detector.schema import C
from detector.schema import Verdict as Verdict
from detector.score import aggregates as agg
from detector.score import hosted as hosted_rule
from detector.score.accounts import account_table
from detector.score.io import Model
from detector.score.rules import RISK, RULE, _final, check_event_features, event_rule_risk, score_events
from detector.score.sources import source_table
from detector.score.takeover import _unshared_malicious, takeover_sprayers


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


def score(detection: Any, model: Model | None, cfg: Config, *, combine: bool = True) -> Scores:
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
    """
    if getattr(detection, "shards", ()):
        return score_shards(detection.shards, model, cfg, combine=combine)
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


def write_shard_risks(
    pairs: tuple[tuple[Path, Path], ...], model: Model | None, cfg: Config, wanted: list[str]
) -> None:
    """Write each shard's ``risk_score`` and ``_rule_risk`` (as :func:`score_events`) to its risk file.

    The event model predicts once per distinct path through its trees over all shards together
    (the shards of a night share most paths: 151,597 per-shard paths but 90,137 distinct ones over
    4 shards of 532,873 events): each shard's paths and rules' risk first, one prediction, then the
    files. Kept per event meanwhile: the rules' risk and a path index (12 bytes).
    """
    thresholds = model.event.thresholds() if model is not None else None
    if model is None or thresholds is None:
        for path, risk in pairs:
            inputs = _shard_inputs(path, wanted)
            score_events(inputs, model, cfg).select(RISK, RULE).write_parquet(risk, compression="lz4")
        return
    rules, inverses, codes = [], [], []
    for path, _ in pairs:
        inputs = _shard_inputs(path, wanted)
        check_event_features(inputs, model)
        rules.append(event_rule_risk(inputs, model, cfg))
        paths, inverse = model.event.paths(agg.event_matrix(inputs, model.event_features), thresholds)
        del inputs
        codes.append(paths)
        inverses.append(inverse)
    every = pl.concat(codes).unique()
    positive = model.event.predict_paths(every, thresholds, threads=PREDICT_THREADS)[:, -1]
    where = every.with_row_index("_path")
    for (_, risk), paths, inverse, rule in zip(pairs, codes, inverses, rules, strict=True):
        index = paths.join(where, on=paths.columns, how="left", maintain_order="left").get_column("_path")
        shard_risk = np.clip(positive[index.to_numpy()[inverse]], 0.0, 1.0)
        pl.DataFrame(
            [pl.Series(RISK, shard_risk, dtype=pl.Float64), pl.Series(RULE, rule, dtype=pl.Float64)]
        ).write_parquet(risk, compression="lz4")


PREDICT_THREADS = 2
"""Threads of the one event-model prediction over a night's distinct paths."""


def _shard_inputs(path: Path, wanted: list[str]) -> pl.DataFrame:
    scan = pl.scan_parquet(path)
    have = scan.collect_schema().names()
    return scan.select([c for c in dict.fromkeys(wanted) if c in have]).collect()


def _scored_scans(pairs: tuple[tuple[Path, Path], ...]) -> list[pl.LazyFrame]:
    """Each shard's detection file beside its row-aligned risk file."""
    return [pl.concat([pl.scan_parquet(d), pl.scan_parquet(r)], how="horizontal") for d, r in pairs]


def score_shards(
    shards: tuple[Path, ...], model: Model | None, cfg: Config, *, combine: bool = True
) -> Scores:
    """:func:`score` of a detection held per account shard (``Detection.shards``), one shard in memory.

    Event risk is row-wise: each shard's risk columns are computed from the few columns they read
    and written beside it (``risk-<shard file>``, row-aligned with it). The source table is one
    group-by over the few columns it reads of all shards; accounts are scored per shard (an
    account's events are in one shard) with the per-source context and the takeover sprayers
    computed over all events. ``Scores.events`` merges the scored shards back into event order,
    lazily (it is streamed into ``events.parquet``).
    """
    names = tuple(model.detector_names) if model is not None else _fired_names(pl.scan_parquet(list(shards)))
    combine = combine and model is not None
    wanted = [*SCORE_INPUTS, *(model.event_features if model is not None else ())]
    pairs = tuple((path, path.with_name("risk-" + path.name)) for path in shards)
    write_shard_risks(pairs, model, cfg, wanted)
    scored = _scored_scans(pairs)
    every = pl.concat(scored)
    sources = source_table(every, model, cfg, names, combine=combine)  # type: ignore[arg-type]
    columns = _rule_columns(model, combine)
    hosted = _hosted(every, sources, cfg, columns)
    if hosted.height:  # the risk files take the raised rules' risk and the mark
        for (_, risk), shard in zip(pairs, scored, strict=True):
            marked = hosted_rule.mark(shard.select(C.EVENT_ID, RISK, RULE), hosted, cfg, columns)
            marked.drop(C.EVENT_ID).collect().write_parquet(risk, compression="lz4")
        scored = _scored_scans(pairs)
        every = pl.concat(scored)
        sources = _rescore_sources(every, sources, hosted, model, cfg, names, combine)
    context = agg.source_context(every).collect()
    sprayers = takeover_sprayers(every, sources, cfg).collect()
    accounts = pl.concat(
        [
            account_table(
                shard.collect(),
                sources,
                model,
                cfg,
                names,
                combine=combine,
                context=context,
                sprayers=sprayers,
            )
            for shard in scored
        ]
    ).sort(RISK, C.ACCOUNT, descending=[True, False])
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


def _fired_names(events: pl.DataFrame | pl.LazyFrame) -> tuple[str, ...]:
    names = events.lazy().select(pl.col(C.DETECTORS).explode().drop_nulls().unique()).collect()
    return tuple(sorted(names.to_series().to_list()))
