"""Helpers shared by the detector modules: registration decorator, scoring, grouping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from detector.detect.registry import Detector, register
from detector.schema import C


def detector(params: type, **meta: Any) -> Callable[[Callable[[pl.LazyFrame, Any], pl.LazyFrame]], Detector]:
    """Register the decorated ``fn(events, params) -> finding rows`` as a Detector."""

    def wrap(fn: Callable[[pl.LazyFrame, Any], pl.LazyFrame]) -> Detector:
        return register(Detector(params=params, fn=fn, **meta))

    return wrap


def ramp(value: pl.Expr, threshold: float, span: float = 3.0) -> pl.Expr:
    """0.5 at the threshold, rising to 1 at ``span`` times it (how far past the threshold)."""
    t = max(float(threshold), 1e-9)
    return (0.5 + 0.5 * ((value / t - 1) / (span - 1)).clip(0.0, 1.0)).cast(pl.Float64)


def spans() -> list[pl.Expr]:
    """start, end and event_ids of a group."""
    return [
        pl.col(C.TIMESTAMP).min().alias("start"),
        pl.col(C.TIMESTAMP).max().alias("end"),
        pl.col(C.EVENT_ID).alias("event_ids"),
    ]


def first_campaign(prefix: str | None = None) -> pl.Expr:
    """The campaign (starting with ``prefix``) of the group's earliest event (by id) that has one.

    By event id, not row order: the source-scoped detectors read the shards' login events in
    shard order.
    """
    c = pl.col(C.CAMPAIGN)
    keep = c.is_not_null() if prefix is None else c.str.starts_with(prefix).fill_null(False)
    return c.filter(keep).sort_by(pl.col(C.EVENT_ID).filter(keep)).first().alias(C.CAMPAIGN)
