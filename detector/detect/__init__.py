"""Detection stage: features, baseline, campaigns, explainable detectors -> :class:`Detection`.

``detect(events, cfg, history)`` takes enriched events (every column of ``schema.EVENT_SCHEMA``
and ``schema.ENRICH_COLUMNS``) and returns the events numbered and annotated (``event_id``,
``FEATURE_COLUMNS``, ``baseline_score``, ``detectors``, ``techniques``, ``campaign``), one row
per finding (``FINDING_SCHEMA``) and one row per campaign (``CAMPAIGN_SCHEMA``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from detector import schema
from detector.config import Config
from detector.detect.campaigns import assign_campaigns, campaign_table
from detector.detect.findings import CAMPAIGN_SCHEMA, FINDING_SCHEMA, empty_findings, finalise
from detector.detect.registry import REGISTRY, Configured, Detector, configure, get, register
from detector.errors import ConfigError
from detector.features import FEATURE_COLUMNS, HIT_DETECTORS, History, build_features, finish_features
from detector.schema import C

__all__ = [
    "CAMPAIGN_SCHEMA",
    "FINDING_SCHEMA",
    "REGISTRY",
    "Detection",
    "Detector",
    "configure",
    "detect",
    "get",
    "register",
]

_DURATION = re.compile(r"^\d+(us|ms|s|m|h|d|w)$")


@dataclass(frozen=True)
class Detection:
    """Result of the detection stage."""

    events: pl.LazyFrame
    findings: pl.DataFrame
    campaigns: pl.DataFrame
    shards: tuple[Path, ...] = ()
    """Per account shard, the events of ``events`` (``detector.detect.shards``): each file sorted by
    ``event_id``, every event of an account in one file. Empty when ``events`` is one frame."""


def _per_event(findings: pl.DataFrame) -> pl.DataFrame:
    """event_id -> detectors (all that fired), techniques (attack detectors only), ``hit_<name>`` 0/1.

    Lists are built from (event, name) pairs sorted once, not sorted per event (millions of small
    groups on a large night).
    """
    return per_event_hits(finding_hits(findings).lazy())


def finding_hits(findings: pl.DataFrame) -> pl.DataFrame:
    """One row per event a finding names: ``event_id``, ``detector``, ``technique``, ``kind``."""
    return (
        findings.lazy()
        .select("detector", "technique", "kind", pl.col("event_ids").alias(C.EVENT_ID))
        .explode(C.EVENT_ID)
        .drop_nulls(C.EVENT_ID)
        .collect()
    )


def per_event_hits(hits: pl.LazyFrame) -> pl.DataFrame:
    """:func:`_per_event` from :func:`finding_hits` rows (of some events: each event's own rows)."""
    detectors = (
        hits.select(C.EVENT_ID, "detector")
        .unique()
        .sort(C.EVENT_ID, "detector")
        .group_by(C.EVENT_ID, maintain_order=True)
        .agg(pl.col("detector").alias(C.DETECTORS))
    )
    techniques = (
        hits.filter(pl.col("kind") == "attack")
        .select(C.EVENT_ID, "technique")
        .unique()
        .sort(C.EVENT_ID, "technique")
        .group_by(C.EVENT_ID, maintain_order=True)
        .agg(pl.col("technique").alias(C.TECHNIQUES))
    )
    return (
        detectors.join(techniques, on=C.EVENT_ID, how="left", maintain_order="left")
        .with_columns(
            pl.col(C.TECHNIQUES).fill_null(pl.lit([], pl.List(pl.String))),
            *[
                pl.col(C.DETECTORS).list.contains(name).cast(pl.Float64).alias(f"hit_{name}")
                for name in HIT_DETECTORS
            ],
        )
        .collect()
    )


def run_detectors(frame: pl.DataFrame, configured: dict[str, Configured]) -> pl.DataFrame:
    """Every enabled detector over the feature frame; their findings in FINDING_SCHEMA."""
    lf = frame.lazy()
    plans = [finalise(c.detector.fn(lf, c.params), c.detector) for c in configured.values() if c.enabled]
    if not plans:
        return empty_findings()
    return pl.concat(pl.collect_all(plans)).sort("start", "detector", "entity", "finding_id")


def detect(events: pl.LazyFrame | pl.DataFrame, cfg: Config, history: History | None = None) -> Detection:
    """Run features, baseline, campaign grouping and every enabled detector."""
    if not _DURATION.match(cfg.features.window):
        raise ConfigError(
            f"[features] window must be a duration such as 6h or 1d, got {cfg.features.window!r}"
        )
    configured = configure(cfg)
    lf = events.lazy()
    schema.check(lf.collect_schema(), schema.ENRICHED_SCHEMA, what="enriched events")
    frame = build_features(lf, cfg.features, history).collect()
    params = {n: c.params for n, c in configured.items()}
    enabled = {n: c.enabled for n, c in configured.items()}
    frame = assign_campaigns(frame, params, enabled)
    findings = run_detectors(frame, configured)
    per_event = _per_event(findings)
    empty_list = pl.lit([], pl.List(pl.String))
    # joined to the event ids alone (one row per event, in order), then glued to the wide frame;
    # the hit flags are computed on the few events with a finding, not on every event
    hits = frame.select(C.EVENT_ID).join(per_event, on=C.EVENT_ID, how="left", maintain_order="left")
    annotated = frame.hstack(
        hits.select(
            pl.col(C.DETECTORS).fill_null(empty_list),
            pl.col(C.TECHNIQUES).fill_null(empty_list),
            *[pl.col(f"hit_{name}").fill_null(0.0) for name in HIT_DETECTORS],
        ).get_columns()
    )
    campaigns = campaign_table(annotated)
    out = finish_features(annotated.lazy())
    keep = [c for c in out.collect_schema().names() if c not in FEATURE_COLUMNS] + list(FEATURE_COLUMNS)
    # materialised here, so that the working frame (integer features, internal columns) is freed
    # before scoring instead of living on under a lazy plan beside its Float64 copy
    events = out.select(keep).collect()
    return Detection(events=events.lazy(), findings=findings, campaigns=campaigns)
