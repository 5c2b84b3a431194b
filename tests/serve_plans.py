"""Tiny plans for the serve tests: one dict per measure, the rest of the contract filled in."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from detector.schema import RECOMMENDATION_SCHEMA

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=24)


def measure(
    action: str,
    target: str,
    *,
    services: tuple[str, ...] = (),
    allowed: list[str] | None = None,
    wave: int | None = None,
    expires: datetime | None = LATER,
) -> dict:
    kind = (
        "account"
        if action != "block"
        else ("asn" if target.startswith("AS") else "cidr" if "/" in target else "ip")
    )
    return {
        "measure_id": "M" + hashlib.sha256(f"{action} {target}".encode()).hexdigest()[:12],
        "action": action,
        "target_type": kind,
        "target": target,
        "services": list(services),
        "allowed_networks": allowed,
        "wave": wave,
        "expires_at": None if action in ("reset_credentials", "reopen") else expires,
        "risk_score": 0.9,
        "confidence": 0.9,
        "reason": "test",
        "techniques": [],
        "evidence": "{}",
        "collateral_accounts": 0,
        "collateral_practitioners": 0,
    }


def plan(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA)


def write_plan(path: Path, rows: list[dict]) -> Path:
    plan(rows).write_parquet(path)
    return path
