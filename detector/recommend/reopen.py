"""Priority reopening after a shutdown of external access: who gets access back first.

Waves, with the plan's blocks in force throughout:

1. health professionals whose activity is clean;
2. targeted (or suspicious) practitioners, restricted to their known networks;
3. the other clean accounts;
4. the rest, and compromised accounts, these only once their credentials have been reset.

Each ``reopen`` row carries the account's risk; :func:`waves` sums them per wave (size and expected
number of compromised accounts the wave lets back in).
"""

from __future__ import annotations

import polars as pl

from detector.schema import UTC_US, C

WAVE_REASONS = {
    1: "wave 1: health professional with clean activity",
    2: "wave 2: targeted health professional, restricted to the networks it uses",
    3: "wave 3: clean activity",
    4: "wave 4: targeted or suspicious activity",
}
AFTER_RESET = "wave 4: compromised; reopen only after the credential reset"


def wave() -> pl.Expr:
    """Reopening wave from ``verdict`` and ``is_practitioner`` (compromised accounts last)."""
    verdict = pl.col("verdict").fill_null("clean")
    practitioner = pl.col(C.IS_PRACTITIONER).fill_null(False)
    return (
        pl.when(verdict == "compromised")
        .then(4)
        .when(practitioner & (verdict == "clean"))
        .then(1)
        .when(practitioner)
        .then(2)
        .when(verdict == "clean")
        .then(3)
        .otherwise(4)
        .cast(pl.Int32)
        .alias("wave")
    )


def reopen_rows(accounts: pl.DataFrame, restricted: list[str] | None = None) -> pl.DataFrame:
    """One ``reopen`` row per account, in waves (see module doc).

    Args:
        accounts: ``Scores.accounts`` (``account``, ``is_practitioner``, ``verdict``, ``risk_score``).
        restricted: accounts the plan restricts; a clean practitioner among them moves to wave 2.
    """
    restricted = restricted or []
    a = accounts.with_columns(pl.col(C.ACCOUNT).str.to_lowercase()).with_columns(
        pl.when(pl.col(C.ACCOUNT).is_in(restricted) & (pl.col("verdict").fill_null("clean") == "clean"))
        .then(pl.lit("targeted"))
        .otherwise(pl.col("verdict"))
        .alias("verdict")
    )
    a = a.with_columns(wave())
    sizes = a.group_by("wave").agg(
        pl.len().cast(pl.Int64).alias("_size"), pl.col(C.RISK_SCORE).fill_null(0.0).sum().alias("_expected")
    )
    a = a.join(sizes, on="wave", how="left")
    reason = pl.col("wave").replace_strict(WAVE_REASONS, return_dtype=pl.String)
    return a.select(
        pl.lit("reopen").alias("action"),
        pl.lit("account").alias("target_type"),
        pl.col(C.ACCOUNT).alias("target"),
        pl.lit(None, pl.List(pl.String)).alias("services"),
        pl.lit(None, pl.List(pl.String)).alias("allowed_networks"),
        "wave",
        pl.lit(None, UTC_US).alias("expires_at"),
        pl.col(C.RISK_SCORE).fill_null(0.0),
        (1.0 - pl.col(C.RISK_SCORE).fill_null(0.0)).alias("confidence"),
        pl.when(pl.col("verdict") == "compromised")
        .then(pl.lit(AFTER_RESET))
        .otherwise(reason)
        .alias("reason"),
        pl.coalesce(pl.col(C.TECHNIQUES), pl.lit([], pl.List(pl.String))).alias(C.TECHNIQUES)
        if C.TECHNIQUES in a.columns
        else pl.lit([], pl.List(pl.String)).alias(C.TECHNIQUES),
        pl.struct(
            verdict=pl.col("verdict"),
            practitioner=pl.col(C.IS_PRACTITIONER).fill_null(False),
            wave_size=pl.col("_size"),
            wave_expected_compromised=pl.col("_expected").round(3),
        )
        .struct.json_encode()
        .alias("evidence"),
        pl.lit(0, pl.Int64).alias("collateral_accounts"),
        pl.lit(0, pl.Int64).alias("collateral_practitioners"),
        pl.col(C.IS_PRACTITIONER).fill_null(False).alias("_practitioner"),
    )


def waves(plan: pl.DataFrame) -> pl.DataFrame:
    """Per reopening wave: accounts, practitioners, compromised, expected compromised, mean/max risk."""
    r = plan.filter(pl.col("action") == "reopen")
    return (
        r.group_by("wave")
        .agg(
            pl.len().cast(pl.Int64).alias("accounts"),
            (pl.col("evidence").str.json_path_match("$.practitioner") == "true")
            .sum()
            .cast(pl.Int64)
            .alias("practitioners"),
            (pl.col("evidence").str.json_path_match("$.verdict") == "compromised")
            .sum()
            .cast(pl.Int64)
            .alias("compromised"),
            pl.col(C.RISK_SCORE).sum().alias("expected_compromised"),
            pl.col(C.RISK_SCORE).mean().alias("mean_risk"),
            pl.col(C.RISK_SCORE).max().alias("max_risk"),
        )
        .sort("wave")
    )
