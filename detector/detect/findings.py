"""Findings are data: one row per (detector, entity, window) with its evidence and events."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import polars as pl

from detector.schema import UTC_US, C, Column, dtypes

ENTITY_TYPES = ("account", "source_ip", "prefix", "asn", "campaign")

FINDING_COLUMNS: tuple[Column, ...] = (
    Column(
        "finding_id",
        pl.String,
        "Stable id: hash of detector, entity type, entity, start (and a detector's key).",
    ),
    Column("detector", pl.String, "Name of the detector (see docs/detectors.md)."),
    Column(
        "technique",
        pl.String,
        "MITRE ATT&CK technique id (for benign explainers: the one they explain away).",
    ),
    Column("severity", pl.String, "info, low, medium, high or critical."),
    Column("kind", pl.String, "attack (raises risk) or benign (an explanation that lowers it)."),
    Column("entity_type", pl.String, "account, source_ip, prefix, asn or campaign."),
    Column("entity", pl.String, "The account, address, prefix, AS<n> or campaign id."),
    Column("start", UTC_US, "First event behind the finding."),
    Column("end", UTC_US, "Last event behind the finding."),
    Column(C.CAMPAIGN, pl.String, "Campaign id, where the finding belongs to one."),
    Column("score", pl.Float64, "Strength of the finding in [0, 1]."),
    Column("evidence", pl.String, "JSON object of counts and thresholds that made it fire."),
    Column("event_ids", pl.List(pl.UInt64), "Events behind the finding (Detection.events.event_id)."),
)
FINDING_SCHEMA = pl.Schema(dtypes(FINDING_COLUMNS))

CAMPAIGN_COLUMNS: tuple[Column, ...] = (
    Column(
        C.CAMPAIGN,
        pl.String,
        "Campaign id (cs- stuffing, ps- spraying, db- distributed brute force, gs- guessing).",
    ),
    Column("technique", pl.String, "ATT&CK technique of the campaign."),
    Column("sources", pl.List(pl.String), "Source addresses grouped into the campaign."),
    Column("prefixes", pl.List(pl.String), "Their /24 (IPv4) or /64 (IPv6) prefixes."),
    Column("asns", pl.List(pl.Int64), "Their autonomous systems."),
    Column("n_sources", pl.Int64, "Number of sources."),
    Column("accounts_targeted", pl.Int64, "Distinct accounts tried."),
    Column("attempts", pl.Int64, "Authentication attempts."),
    Column("successes", pl.Int64, "Successful logins from its sources."),
    Column("start", UTC_US, "First event."),
    Column("end", UTC_US, "Last event."),
)
CAMPAIGN_SCHEMA = pl.Schema(dtypes(CAMPAIGN_COLUMNS))


def stable_id(prefix: str, *parts: Any) -> str:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return prefix + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def stable_ids(prefix: str, cols: list[str]) -> pl.Expr:
    """Stable ids from columns (Python hashing of the few finding rows, stable across versions)."""
    return pl.struct(cols).map_batches(
        lambda s: pl.Series([stable_id(prefix, *d.values()) for d in s.to_list()], dtype=pl.String),
        return_dtype=pl.String,
    )


def evidence(**fields: pl.Expr) -> pl.Expr:
    """A JSON evidence string from named expressions."""
    return pl.struct(**fields).struct.json_encode()


def to_evidence(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True)


def finalise(lf: pl.LazyFrame, det: Any) -> pl.LazyFrame:
    """Complete a detector's rows (entity_type, entity, start, end, score, evidence, event_ids, campaign?).

    An optional ``key`` column tells apart findings of one detector on the same entity and window.
    """
    have = lf.collect_schema().names()
    lf = lf.with_columns(
        pl.lit(det.name).alias("detector"),
        pl.lit(det.technique).alias("technique"),
        pl.lit(det.severity).alias("severity"),
        pl.lit(det.kind).alias("kind"),
        *([] if C.CAMPAIGN in have else [pl.lit(None, pl.String).alias(C.CAMPAIGN)]),
        pl.col("score").cast(pl.Float64).clip(0.0, 1.0),
        pl.col("event_ids").list.sort(),
        (pl.col("key").cast(pl.String) if "key" in have else pl.lit("")).alias("_key"),
    ).with_columns(
        stable_ids("F", ["detector", "entity_type", "entity", "start", "_key"]).alias("finding_id")
    )
    return lf.select([pl.col(n).cast(t) for n, t in FINDING_SCHEMA.items()])


def empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDING_SCHEMA)
