"""Event risk: the detectors' rules and the login model, per event.

:func:`score_events` gives each event ``risk_score`` (the login model's calibrated probability, or
without a model the rules' fallback :func:`rule_event_risk`, from the severities of the detectors
that fired) and keeps the rules' risk beside it (``_rule_risk``); :func:`detector_meta` is the
detectors' technique, kind and weight the rules and the reasons read.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import polars as pl

from detector.config import Config
from detector.errors import ModelError
from detector.schema import C
from detector.score import aggregates as agg
from detector.score.io import Model

RISK = C.RISK_SCORE

SEVERITY_WEIGHT: dict[str, float] = {"info": 0.05, "low": 0.2, "medium": 0.45, "high": 0.7, "critical": 0.9}
"""Fallback risk of an event on which one attack detector of this severity fired."""
UNKNOWN_DETECTOR_WEIGHT = 0.3
BENIGN_DAMPING = 0.25
"""Fallback: a benign explainer (stale password, typo, shared address) multiplies the risk by this."""


@functools.cache
def _registry_meta() -> dict[str, tuple[str, str, str]]:
    try:
        from detector.detect import registry

        registry._load_builtins()
        return {n: (d.technique, d.kind, d.severity) for n, d in registry.REGISTRY.items()}
    except ImportError:
        return {}


def detector_meta(names: list[str] | tuple[str, ...] = ()) -> pl.DataFrame:
    """``detector, technique, kind, weight`` for the registered detectors plus ``names``."""
    meta = dict(_registry_meta())
    for n in names:
        meta.setdefault(n, ("", "attack", ""))
    rows = [
        (n, t or None, k, SEVERITY_WEIGHT.get(s, UNKNOWN_DETECTOR_WEIGHT))
        for n, (t, k, s) in sorted(meta.items())
    ]
    return pl.DataFrame(
        rows,
        schema={"detector": pl.String, "technique": pl.String, "kind": pl.String, "weight": pl.Float64},
        orient="row",
    )


def _fired(events: pl.LazyFrame, meta: pl.DataFrame) -> pl.LazyFrame:
    """One row per (event, detector that fired), with the detector's metadata."""
    return (
        events.select(C.EVENT_ID, pl.col(C.DETECTORS).alias("detector"))
        .explode("detector")
        .drop_nulls("detector")
        .join(meta.lazy(), on="detector", how="left")
        .with_columns(pl.col("kind").fill_null("attack"), pl.col("weight").fill_null(UNKNOWN_DETECTOR_WEIGHT))
    )


def rule_event_risk(events: pl.DataFrame) -> np.ndarray:
    """Fallback event risk: ``1 - prod(1 - weight)`` over attack detectors, damped by benign ones."""
    names = events.get_column(C.DETECTORS).explode().drop_nulls().unique().to_list()
    per_event = (
        _fired(events.lazy(), detector_meta(names))
        .group_by(C.EVENT_ID)
        .agg(
            (pl.when(pl.col("kind") == "attack").then((1 - pl.col("weight")).log()).otherwise(0.0).sum())
            .exp()
            .alias("_keep"),
            (pl.col("kind") == "benign").any().alias("_benign"),
        )
        .with_columns(
            ((1 - pl.col("_keep")) * pl.when(pl.col("_benign")).then(BENIGN_DAMPING).otherwise(1.0)).alias(
                RISK
            )
        )
    )
    out = events.lazy().select(C.EVENT_ID).join(per_event, on=C.EVENT_ID, how="left", maintain_order="left")
    return out.select(pl.col(RISK).fill_null(0.0)).collect().to_series().to_numpy()


def _positive(model: Any, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0)
    return model.positive_proba(x)


MATRIX_ROWS = 500_000
"""Events scored per model call: the float matrix of a chunk (64 features) stays near 250 MiB."""

RULE = "_rule_risk"
"""Working column: the rule-based risk of an event, kept beside the model's."""


def _final(lf: pl.LazyFrame, combine: bool) -> pl.LazyFrame:
    """Events with ``risk_score`` = the larger of the model's and the rules' risk (when ``combine``)."""
    return lf.with_columns(pl.max_horizontal(RISK, RULE).alias(RISK)) if combine else lf


def event_rule_risk(events: pl.DataFrame, model: Model | None, cfg: Config) -> np.ndarray:
    """The rules' risk of each event as :func:`score_events` keeps it beside the model's (``_rule_risk``)."""
    shared = (
        events.get_column(C.IP_LEGIT_ACCOUNTS).fill_null(0).to_numpy()
        >= cfg.scoring.shared_address_min_accounts
        if C.IP_LEGIT_ACCOUNTS in events.columns
        else np.zeros(events.height, dtype=bool)
    )
    rule = np.clip(rule_event_risk(events), 0.0, 1.0) * np.where(shared, BENIGN_DAMPING, 1.0)
    if model is None:
        return rule
    # The model was trained on enriched events: where an address has no GeoIP answer (no ASN),
    # its network features are all zero, a case it never saw, so the rules' risk stands beside it.
    unseen = (
        events.get_column(C.ASN).is_null().to_numpy()
        if C.ASN in events.columns
        else np.ones(events.height, bool)
    )
    return np.where(unseen, rule, 0.0)


def check_event_features(events: pl.DataFrame, model: Model) -> None:
    """Raise ModelError when ``events`` lack a feature the event model reads."""
    missing = [
        n for n in model.event_features if n not in events.columns and n not in agg.EXTRA_EVENT_FEATURES
    ]
    if missing:
        raise ModelError(
            f"model {model.model_id} reads features this detection lacks: {', '.join(missing[:5])}",
            path=model.path,
            hint="the model was trained on another version of detector.features: retrain with `make model`",
        )


def score_events(events: pl.DataFrame, model: Model | None, cfg: Config | None = None) -> pl.DataFrame:
    """``risk_score`` (the model's, or the rules' without a model) and the rules' risk in ``_rule_risk``.

    The rules' risk of an event from an address where at least ``shared_address_min_accounts``
    accounts log in legitimately (``ip_legit_accounts``, from enrichment) is damped like a benign
    explanation: a CGNAT gateway or a hospital NAT that an attacker also used does not make every
    user behind it a suspect.
    """
    cfg = cfg or Config()
    rule = event_rule_risk(events, model, cfg)
    if model is None:
        risk = rule
    else:
        check_event_features(events, model)
        risk = np.concatenate(
            [
                _positive(model.event, agg.event_matrix(chunk, model.event_features))
                for chunk in events.iter_slices(MATRIX_ROWS)
            ]
            or [np.zeros(0)]
        )
    return events.with_columns(
        pl.Series(RISK, np.clip(risk, 0.0, 1.0), dtype=pl.Float64), pl.Series(RULE, rule, dtype=pl.Float64)
    )
