"""The model's inputs: per-event features and per-account / per-source aggregates, as polars expressions.

The event model reads ``FEATURE_COLUMNS`` (from ``detector.features``) plus a few outcome flags;
the account and source models read aggregates of the scored events (login risk, evidence counts,
successes from sources seen attacking). Every table is built by one vectorised ``group_by``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from detector.schema import Action, C, Outcome

RISK = C.RISK_SCORE
RISKY = 0.5
"""Event risk at or above which a login counts as risky in the aggregates."""


def is_login() -> pl.Expr:
    return (pl.col(C.ACTION) == Action.LOGIN).fill_null(False)


def is_success() -> pl.Expr:
    return is_login() & (pl.col(C.OUTCOME) == Outcome.SUCCESS).fill_null(False)


def is_failure() -> pl.Expr:
    return is_login() & pl.col(C.OUTCOME).is_in(Outcome.FAILED).fill_null(False)


def attempts() -> pl.Expr:
    """Attempts an event stands for (Dovecot's 'N attempts'), at least 1 for a login."""
    return pl.col(C.ATTEMPTS).fill_null(1).clip(lower_bound=1).cast(pl.Int64)


def fired(name: str) -> pl.Expr:
    return pl.col(C.DETECTORS).list.contains(name).fill_null(False)


def flag(col: str) -> pl.Expr:
    return pl.col(col).fill_null(False).cast(pl.Float64)


EXTRA_EVENT_FEATURES: dict[str, pl.Expr] = {
    "x_login": is_login().cast(pl.Float64),
    "x_success": is_success().cast(pl.Float64),
    "x_failure": is_failure().cast(pl.Float64),
    "x_unknown_user": (pl.col(C.OUTCOME) == Outcome.UNKNOWN_USER).fill_null(False).cast(pl.Float64),
    "x_send": (pl.col(C.ACTION) == Action.SEND).fill_null(False).cast(pl.Float64),
    "x_attempts": attempts().cast(pl.Float64),
    "x_in_campaign": pl.col(C.CAMPAIGN).is_not_null().cast(pl.Float64),
    "x_detectors": pl.col(C.DETECTORS).list.len().fill_null(0).cast(pl.Float64),
}
"""Event flags the model reads besides ``FEATURE_COLUMNS``."""


def event_feature_names(feature_columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(feature_columns) + tuple(EXTRA_EVENT_FEATURES)


def event_matrix(events: pl.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """The event model's input matrix, columns in ``names`` order (missing extras computed here)."""
    have = set(events.columns)
    exprs = [
        (pl.col(n) if n in have else EXTRA_EVENT_FEATURES.get(n, pl.lit(0.0)))
        .cast(pl.Float64)
        .fill_null(0.0)
        .fill_nan(0.0)
        .alias(n)
        for n in names
    ]
    return events.select(exprs).to_numpy().astype(np.float64, copy=False)


def _count(cond: pl.Expr) -> pl.Expr:
    return cond.cast(pl.Int64).sum()


def _attempt_sum(cond: pl.Expr) -> pl.Expr:
    return pl.when(cond).then(attempts()).otherwise(0).sum()


def _max_where(value: pl.Expr, cond: pl.Expr) -> pl.Expr:
    return value.filter(cond).max().fill_null(0.0).cast(pl.Float64)


def source_context(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per source: accounts it failed on, its worst failure risk, its failed attempts (all accounts)."""
    failed = is_failure()
    return events.group_by(C.SOURCE_IP).agg(
        pl.col(C.ACCOUNT).filter(failed).n_unique().alias("_src_fail_accounts"),
        _max_where(pl.col(RISK), failed).alias("_src_fail_risk"),
        _attempt_sum(failed).alias("_src_failures"),
    )


def with_source_context(events: pl.LazyFrame, context: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Add per-source context to each event: accounts the source failed on, its worst failure risk.

    ``context``: :func:`source_context` of all events when ``events`` holds one account shard.
    """
    per_source = source_context(events) if context is None else context.lazy()
    return events.join(per_source, on=C.SOURCE_IP, how="left", nulls_equal=True)


def account_aggregates(
    events: pl.LazyFrame, detector_names: tuple[str, ...], context: pl.DataFrame | None = None
) -> pl.LazyFrame:
    """One row per account: the account model's features (``acc_*``), keyed by ``account``."""
    ok, bad, login = is_success(), is_failure(), is_login()
    attack_src = (pl.col("_src_fail_accounts") >= 3) | pl.col(C.CAMPAIGN).is_not_null()
    aggs = [
        pl.col(RISK).max().alias("acc_risk_max"),
        pl.col(RISK).mean().alias("acc_risk_mean"),
        _max_where(pl.col(RISK), ok).alias("acc_risk_success_max"),
        _max_where(pl.col(RISK), bad).alias("acc_risk_failure_max"),
        _attempt_sum(login).alias("acc_attempts"),
        _attempt_sum(bad).alias("acc_failures"),
        _count(ok).alias("acc_successes"),
        _count(ok & (pl.col(RISK) >= RISKY)).alias("acc_successes_risky"),
        _count(ok & pl.col(C.CAMPAIGN).is_not_null()).alias("acc_successes_campaign"),
        _count(ok & attack_src).alias("acc_successes_attack_source"),
        _attempt_sum(bad & pl.col(C.CAMPAIGN).is_not_null()).alias("acc_failures_campaign"),
        pl.col(C.SOURCE_IP).filter(login).n_unique().alias("acc_sources"),
        pl.col(C.SOURCE_IP).filter(ok).n_unique().alias("acc_success_sources"),
        pl.col(C.COUNTRY).filter(ok).n_unique().alias("acc_success_countries"),
        pl.col(C.ASN).filter(ok).n_unique().alias("acc_success_asns"),
        _max_where(pl.col(C.BASELINE_SCORE), ok).alias("acc_baseline_success_max"),
        _max_where(pl.col("_src_fail_accounts").cast(pl.Float64), ok).alias("acc_success_src_fail_accounts"),
        _max_where(pl.col("_src_fail_risk"), ok).alias("acc_success_src_fail_risk"),
        _count(ok & (flag(C.IS_HOSTING) + flag(C.IS_VPN) + flag(C.IS_TOR) > 0)).alias(
            "acc_successes_anonymous"
        ),
        pl.col(C.BYTES_OUT).fill_null(0).sum().log1p().alias("acc_bytes_out_log"),
        pl.col(C.RECIPIENTS).fill_null(0).sum().cast(pl.Float64).log1p().alias("acc_recipients_log"),
        *[_count(fired(d)).alias(f"acc_det_{d}") for d in detector_names],
        *[_count(ok & fired(d)).alias(f"acc_success_det_{d}") for d in detector_names],
    ]
    return (
        with_source_context(events, context)
        .filter(pl.col(C.ACCOUNT).is_not_null())
        .group_by(C.ACCOUNT)
        .agg(aggs)
        .sort(C.ACCOUNT)
    )


def source_aggregates(events: pl.LazyFrame, detector_names: tuple[str, ...]) -> pl.LazyFrame:
    """One row per source address: the source model's features (``src_*``), keyed by ``source_ip``."""
    ok, bad, login = is_success(), is_failure(), is_login()
    unknown = login & (pl.col(C.OUTCOME) == Outcome.UNKNOWN_USER).fill_null(False)
    aggs = [
        pl.col(RISK).max().alias("src_risk_max"),
        pl.col(RISK).mean().alias("src_risk_mean"),
        pl.col(RISK).filter(bad).mean().fill_null(0.0).alias("src_risk_failure_mean"),
        _max_where(pl.col(RISK), ok).alias("src_risk_success_max"),
        _attempt_sum(login).alias("src_attempts"),
        _attempt_sum(bad).alias("src_failures"),
        _count(ok).alias("src_successes"),
        _count(ok & (pl.col(RISK) >= RISKY)).alias("src_successes_risky"),
        _attempt_sum(unknown).alias("src_unknown_user"),
        pl.col(C.ACCOUNT).filter(login).n_unique().alias("src_accounts"),
        pl.col(C.ACCOUNT).filter(bad).n_unique().alias("src_failed_accounts"),
        pl.col(C.ACCOUNT).filter(ok).n_unique().alias("src_success_accounts"),
        pl.col(C.IP_LEGIT_ACCOUNTS).max().fill_null(0).cast(pl.Float64).alias("src_legit_accounts"),
        pl.col(C.CAMPAIGN).is_not_null().any().cast(pl.Float64).alias("src_in_campaign"),
        flag(C.IS_HOSTING).max().alias("src_hosting"),
        flag(C.IS_VPN).max().alias("src_vpn"),
        flag(C.IS_TOR).max().alias("src_tor"),
        pl.col(C.BASELINE_SCORE).filter(ok).mean().fill_null(0.0).alias("src_baseline_success_mean"),
        *[_count(fired(d)).alias(f"src_det_{d}") for d in detector_names],
    ]
    ratios = [
        (pl.col("src_failures") / pl.col("src_attempts").clip(lower_bound=1)).alias("src_failure_share"),
        (pl.col("src_unknown_user") / pl.col("src_attempts").clip(lower_bound=1)).alias("src_unknown_share"),
    ]
    return (
        events.filter(pl.col(C.SOURCE_IP).is_not_null())
        .group_by(C.SOURCE_IP)
        .agg(aggs)
        .with_columns(ratios)
        .sort(C.SOURCE_IP)
    )


def feature_names(frame_schema: pl.Schema, prefix: str) -> tuple[str, ...]:
    return tuple(n for n in frame_schema.names() if n.startswith(prefix))


def matrix(frame: pl.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """Columns ``names`` as a float matrix; a name missing from ``frame`` reads as 0."""
    have = set(frame.columns)
    cols = [
        (pl.col(n) if n in have else pl.lit(0.0)).cast(pl.Float64).fill_null(0.0).fill_nan(0.0).alias(n)
        for n in names
    ]
    return frame.select(cols).to_numpy().astype(np.float64, copy=False)
