"""Block rows for the scoped blocks :func:`detector.recommend.scope.choose_blocks` chose, and monitor
rows for the attacking sources left unblocked and the suspicious ones."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from detector.config import Config
from detector.recommend import scope
from detector.recommend.context import (
    BLOCK,
    COLLATERAL_PRIVATE,
    MAX_FINDING_IDS,
    MONITOR,
    SUSPICIOUS,
    TARGET_ASN,
    TARGET_CIDR,
    TARGET_IP,
    _attack_stats,
    _evidence_json,
    _findings_for,
)
from detector.schema import UTC_US, C


def _blocks(
    scoping: scope.Scoping,
    attackers: pl.DataFrame,
    attack: pl.DataFrame,
    findings: pl.DataFrame,
    now: datetime,
    cfg: Config,
) -> pl.DataFrame:
    blocks = scoping.blocks.with_row_index("measure")
    if blocks.is_empty():
        return pl.DataFrame()
    members = blocks.select("measure", pl.col(scope.SOURCES).alias(C.SOURCE_IP)).explode(C.SOURCE_IP)
    per_source = members.join(attackers, on=C.SOURCE_IP, how="left")
    events = members.join(attack, on=C.SOURCE_IP, how="inner")
    stats = _attack_stats(events, "measure")
    ids = pl.concat(
        [
            _findings_for(members.rename({C.SOURCE_IP: "entity"}), findings, "source_ip"),
            _findings_for(blocks.select("measure", pl.col(scope.KEY).alias("entity")), findings, "prefix"),
            _findings_for(blocks.select("measure", pl.col(scope.KEY).alias("entity")), findings, "asn"),
            _findings_for(
                per_source.select("measure", pl.col(C.CAMPAIGN).alias("entity")).drop_nulls(),
                findings,
                "campaign",
            ),
        ]
    ).unique()
    ids = ids.sort("finding_id").group_by("measure").agg(pl.col("finding_id").alias("_findings"))
    src = per_source.group_by("measure").agg(
        pl.col(C.RISK_SCORE).max().alias("_risk"),
        pl.col(C.RISK_SCORE).mean().alias("_confidence"),
        pl.col("attempts").sum().alias("_src_attempts"),
        pl.col("failures").sum().alias("_failures"),
        pl.col(C.AS_ORG).drop_nulls().first().alias("_as_org"),
        pl.col(C.CAMPAIGN).drop_nulls().unique().sort().alias("_src_campaigns"),
    )
    b = (
        blocks.join(src, on="measure", how="left")
        .join(stats.drop(scope.SERVICES), on="measure", how="left")
        .join(ids, on="measure", how="left")
        .with_columns(
            pl.col("_findings").fill_null(pl.lit([], pl.List(pl.String))),
            pl.coalesce("_src_attempts", "_attempts").fill_null(0).alias("_attempts"),
            pl.col("_accounts").fill_null(0),
            pl.col("_successes").fill_null(0),
            pl.col(C.TECHNIQUES).fill_null(pl.lit([], pl.List(pl.String))),
            pl.concat_list(
                pl.col("_src_campaigns"), pl.col("_campaigns").fill_null(pl.lit([], pl.List(pl.String)))
            )
            .list.unique()
            .list.sort()
            .alias("_campaigns"),
        )
    )
    n = pl.col(scope.SOURCES).list.len()
    services_text = (
        pl.when(pl.col(scope.SERVICES).list.len() > 0)
        .then(pl.lit(" on ") + pl.col(scope.SERVICES).list.join("/"))
        .otherwise(pl.lit(""))
    )
    campaign_text = (
        pl.when(pl.col("_campaigns").list.len() > 0)
        .then(pl.lit(" (campaign ") + pl.col("_campaigns").list.join(", ") + pl.lit(")"))
        .otherwise(pl.lit(""))
    )
    level = pl.col(scope.LEVEL)
    what = (
        pl.when(level == scope.LEVEL_IP)
        .then(
            pl.format(
                "{} made {} login attempts against {} accounts", pl.col(scope.KEY), "_attempts", "_accounts"
            )
        )
        .when(level == scope.LEVEL_ASN)
        .then(
            pl.format(
                "{} attacking addresses in {} ({}) made {} login attempts against {} accounts",
                n,
                pl.col(scope.KEY),
                pl.col("_as_org").fill_null("unknown organisation"),
                "_attempts",
                "_accounts",
            )
        )
        .otherwise(
            pl.format(
                "{} attacking addresses in {} made {} login attempts against {} accounts",
                n,
                pl.col(scope.KEY),
                "_attempts",
                "_accounts",
            )
        )
    )
    # Postfix logs most failed SASL logins without the name tried (guessing_source)
    what = what + pl.when(pl.col("_unnamed") > 0).then(
        pl.format(" ({} without an account name)", "_unnamed")
    ).otherwise(pl.lit(""))
    spare = (
        pl.when(pl.col(scope.EXCEPT).list.len() > 0)
        .then(
            pl.format(
                "; hosting/VPN network: except the {} addresses its legitimate users log in from",
                pl.col(scope.EXCEPT).list.len(),
            )
        )
        .when(level == scope.LEVEL_ASN)
        .then(pl.lit("; nobody logs in legitimately from this network"))
        .when(pl.col(scope.COLLATERAL) == 0)
        .then(pl.lit("; no legitimate login from it"))
        .otherwise(
            pl.format("; {} legitimate accounts would be hit (within budget)", pl.col(scope.COLLATERAL))
        )
    )
    return b.select(
        pl.lit(BLOCK).alias("action"),
        pl.when(level == scope.LEVEL_IP)
        .then(pl.lit(TARGET_IP))
        .when(level == scope.LEVEL_ASN)
        .then(pl.lit(TARGET_ASN))
        .otherwise(pl.lit(TARGET_CIDR))
        .alias("target_type"),
        pl.col(scope.KEY).alias("target"),
        pl.col(scope.SERVICES).alias("services"),
        pl.col(scope.EXCEPT).alias("allowed_networks"),
        pl.lit(None, pl.Int32).alias("wave"),
        pl.lit(now + timedelta(hours=cfg.plan.block_hours)).cast(UTC_US).alias("expires_at"),
        pl.col("_risk").fill_null(0.0).alias(C.RISK_SCORE),
        pl.col("_confidence").fill_null(0.0).alias("confidence"),
        pl.concat_str([what, services_text, campaign_text, spare]).alias("reason"),
        pl.col(C.TECHNIQUES),
        _evidence_json(
            sources=n,
            attempts="_attempts",
            failures=pl.col("_failures").fill_null(0),
            successes="_successes",
            accounts="_accounts",
            campaigns="_campaigns",
            findings=pl.col("_findings").list.head(MAX_FINDING_IDS),
            findings_total=pl.col("_findings").list.len(),
        ),
        pl.col(scope.COLLATERAL).alias("collateral_accounts"),
        pl.col(scope.COLLATERAL_PRACT).alias("collateral_practitioners"),
        pl.col(scope.COLLATERAL_LIST).alias(COLLATERAL_PRIVATE),
        pl.lit(False).alias("_practitioner"),
    )


def _source_monitors(sources: pl.DataFrame, scoping: scope.Scoping, attackers: pl.DataFrame) -> pl.DataFrame:
    """Monitor rows: attacking sources left unblocked (and why), and suspicious sources."""
    unblocked = scoping.unblocked.join(sources, on=C.SOURCE_IP, how="left").with_columns(
        pl.format(
            "attacking source not blocked: {} ({} legitimate accounts behind it); its targets are restricted instead",
            pl.col(scope.WHY),
            pl.col(scope.COLLATERAL),
        ).alias("reason")
    )
    watch = sources.filter(
        (pl.col("verdict") == SUSPICIOUS)
        & ~pl.col(C.SOURCE_IP).is_in(attackers.get_column(C.SOURCE_IP).to_list())
    )
    watch = watch.with_columns(
        pl.lit("suspicious source, not worth acting on yet").alias("reason"),
        pl.lit(0, pl.Int64).alias(scope.COLLATERAL),
        pl.lit(0, pl.Int64).alias(scope.COLLATERAL_PRACT),
    )
    both = pl.concat(
        [
            f.select(
                C.SOURCE_IP,
                "reason",
                C.RISK_SCORE,
                "attempts",
                "failures",
                "successes",
                "accounts_targeted",
                pl.col(scope.COLLATERAL).cast(pl.Int64),
                pl.col(scope.COLLATERAL_PRACT).cast(pl.Int64),
            )
            for f in (unblocked, watch)
        ]
    )
    return both.select(
        pl.lit(MONITOR).alias("action"),
        pl.lit(TARGET_IP).alias("target_type"),
        pl.col(C.SOURCE_IP).alias("target"),
        pl.lit(None, pl.List(pl.String)).alias("services"),
        pl.lit(None, pl.List(pl.String)).alias("allowed_networks"),
        pl.lit(None, pl.Int32).alias("wave"),
        pl.lit(None, UTC_US).alias("expires_at"),
        pl.col(C.RISK_SCORE).fill_null(0.0),
        pl.col(C.RISK_SCORE).fill_null(0.0).alias("confidence"),
        "reason",
        pl.lit([], pl.List(pl.String)).alias(C.TECHNIQUES),
        _evidence_json(
            attempts=pl.col("attempts").fill_null(0),
            failures=pl.col("failures").fill_null(0),
            successes=pl.col("successes").fill_null(0),
            accounts=pl.col("accounts_targeted").fill_null(0),
        ),
        pl.col(scope.COLLATERAL).alias("collateral_accounts"),
        pl.col(scope.COLLATERAL_PRACT).alias("collateral_practitioners"),
        pl.lit(False).alias("_practitioner"),
    )
