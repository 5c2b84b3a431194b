"""What the plan reads and the words it is written in: its actions, target types and verdicts,
the logins it needs from the scored events, the attack findings, the attackers it acts on, the
legitimate logins (the unit of collateral) and the attack statistics per source or account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from detector.config import Config
from detector.recommend import scope
from detector.schema import UTC_US, C, Outcome

if TYPE_CHECKING:
    from detector.detect import Detection

BLOCK = "block"
LOCK = "lock_account"
RESET = "reset_credentials"
RESTRICT = "restrict_account"
REOPEN = "reopen"
MONITOR = "monitor"
ACTIONS = (BLOCK, LOCK, RESET, RESTRICT, REOPEN, MONITOR)

TARGET_IP = "ip"
TARGET_CIDR = "cidr"
TARGET_ASN = "asn"
TARGET_ACCOUNT = "account"

MALICIOUS = "malicious"
SUSPICIOUS = "suspicious"
COMPROMISED = "compromised"
TARGETED = "targeted"
CLEAN = "clean"

COLLATERAL_PRIVATE = "_collateral"
"""The plan's private column of collateral accounts (``recommend(..., with_collateral=True)``)."""


MAX_FINDING_IDS = 50
"""Finding ids listed in a measure's evidence (the total is always given)."""

_EVENT_COLUMNS = {
    C.TIMESTAMP: UTC_US,
    C.ACCOUNT: pl.String,
    C.SOURCE_IP: pl.String,
    C.PREFIX: pl.String,
    C.PREFIX48: pl.String,
    C.ASN: pl.Int64,
    C.AS_ORG: pl.String,
    C.SERVICE: pl.String,
    C.ACTION: pl.String,
    C.OUTCOME: pl.String,
    C.IS_PRACTITIONER: pl.Boolean,
    C.IS_HOSTING: pl.Boolean,
    C.IS_VPN: pl.Boolean,
    C.IS_TOR: pl.Boolean,
    C.RISK_SCORE: pl.Float64,
    C.TECHNIQUES: pl.List(pl.String),
    C.CAMPAIGN: pl.String,
}


def _frame(obj: Any, name: str) -> pl.DataFrame | None:
    value = getattr(obj, name, None)
    if value is None:
        return None
    return value.collect() if isinstance(value, pl.LazyFrame) else value


def _finding_index(detection: Detection | None) -> pl.DataFrame:
    """``entity_type``, ``entity``, ``finding_id`` of attack findings (benign explainers excluded)."""
    findings = _frame(detection, "findings")
    schema = {"entity_type": pl.String, "entity": pl.String, "finding_id": pl.String}
    if findings is None or not {"entity", "finding_id"} <= set(findings.columns):
        return pl.DataFrame(schema=schema)
    if "kind" in findings.columns:
        findings = findings.filter(pl.col("kind").fill_null("attack") != "benign")
    if "entity_type" not in findings.columns:
        findings = findings.with_columns(pl.lit(None, pl.String).alias("entity_type"))
    return findings.select([pl.col(k).cast(v) for k, v in schema.items()]).unique().sort("finding_id")


def _findings_for(keys: pl.DataFrame, index: pl.DataFrame, entity_type: str) -> pl.DataFrame:
    """Per ``measure`` key: ids of findings whose entity is one of its ``entity`` values."""
    return keys.join(
        index.filter(pl.col("entity_type") == entity_type).drop("entity_type"), on="entity", how="inner"
    ).select("measure", "finding_id")


def _evidence_json(**fields: pl.Expr) -> pl.Expr:
    return pl.struct(**fields).struct.json_encode().alias("evidence")


def _attackers(cfg: Config) -> pl.Expr:
    """Sources the plan acts on: malicious ones, and suspicious ones in a campaign or with many failures."""
    verdict = pl.col("verdict")
    busy = pl.lit(cfg.plan.act_on_suspicious_failures > 0) & (
        pl.col("failures").fill_null(0) >= cfg.plan.act_on_suspicious_failures
    )
    return (verdict == MALICIOUS) | ((verdict == SUSPICIOUS) & (pl.col(C.CAMPAIGN).is_not_null() | busy))


def is_legit(
    attacker_ips: list[str], compromised: list[str], threshold: float, userless: list[str] | None = None
) -> pl.Expr:
    """A legitimate successful login: not risky, not a compromised account's login from an attacker,
    and not from an attacking address scoring counts no legitimate user on (``userless``: its
    successes are the attacker's own, e.g. a sprayer's one right guess)."""
    risky = (
        (pl.col(C.RISK_SCORE).fill_null(0.0) >= threshold)
        | (pl.col(C.ACCOUNT).is_in(compromised) & pl.col(C.SOURCE_IP).is_in(attacker_ips))
        | pl.col(C.SOURCE_IP).is_in(userless or [])
    )
    return (
        (pl.col(C.OUTCOME) == Outcome.SUCCESS)
        & pl.col(C.ACCOUNT).is_not_null()
        & pl.col(C.SOURCE_IP).is_not_null()
        & ~risky
    )


def _attack_stats(attack: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per source or per account: attacked services (expanded; [] = all), techniques, counts."""
    return attack.group_by(by).agg(
        pl.when(pl.col(C.SERVICE).is_null().any())
        .then(pl.lit([], pl.List(pl.String)))
        .otherwise(pl.col(C.SERVICE).drop_nulls().unique().sort().implode())
        .first()
        .alias(scope.SERVICES),
        pl.col(C.TECHNIQUES)
        .list.explode(keep_nulls=False, empty_as_null=False)
        .drop_nulls()
        .unique()
        .sort()
        .alias(C.TECHNIQUES),
        pl.len().cast(pl.Int64).alias("_attempts"),
        (pl.col(C.OUTCOME) == Outcome.SUCCESS).sum().cast(pl.Int64).alias("_successes"),
        pl.col(C.ACCOUNT).drop_nulls().n_unique().cast(pl.Int64).alias("_accounts"),
        pl.col(C.ACCOUNT).is_null().sum().cast(pl.Int64).alias("_unnamed"),
        pl.col(C.SOURCE_IP).drop_nulls().n_unique().cast(pl.Int64).alias("_sources"),
        pl.col(C.CAMPAIGN).drop_nulls().unique().sort().alias("_campaigns"),
        pl.col(C.TIMESTAMP).max().alias("_last"),
    )


def _expand(services: pl.Expr) -> pl.Expr:
    return scope.expand_services_expr(services)
