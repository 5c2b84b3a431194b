"""How right each detector is against ground truth (the figures in docs/detectors.md).

``labelled`` is ``Detection.events`` after :func:`detector.labels.label_events` (it needs
``event_id``, ``is_attack``, ``label_technique``, ``action`` and ``techniques``).
"""

from __future__ import annotations

import polars as pl

from detector.schema import C


def detector_quality(findings: pl.DataFrame, labelled: pl.DataFrame) -> pl.DataFrame:
    """Per detector: findings, finding precision (majority of events are attacks), events, event precision.

    For benign explainers the precision columns are attack shares (they should be near 0).
    """
    truth = labelled.select(C.EVENT_ID, pl.col("is_attack").fill_null(False))
    hits = findings.select("detector", "kind", "finding_id", "event_ids").explode("event_ids")
    hits = hits.rename({"event_ids": C.EVENT_ID}).join(truth, on=C.EVENT_ID, how="left")
    per_finding = hits.group_by("detector", "kind", "finding_id").agg(
        pl.col("is_attack").fill_null(False).mean()
    )
    by_finding = per_finding.group_by("detector", "kind").agg(
        pl.len().alias("findings"), (pl.col("is_attack") >= 0.5).mean().alias("finding_precision")
    )
    by_event = (
        hits.unique(["detector", C.EVENT_ID])
        .group_by("detector")
        .agg(pl.len().alias("events"), pl.col("is_attack").fill_null(False).mean().alias("event_precision"))
    )
    return by_finding.join(by_event, on="detector", how="left").sort("kind", "detector")


def technique_recall(labelled: pl.DataFrame) -> pl.DataFrame:
    """Per labelled attack family and action: share of its events on which an attack detector fired."""
    return (
        labelled.filter(pl.col("is_attack").fill_null(False))
        .group_by("label_technique", C.ACTION)
        .agg(pl.len().alias("events"), (pl.col(C.TECHNIQUES).list.len() > 0).mean().alias("recall"))
        .sort("label_technique", C.ACTION)
    )
