"""Per-window statistics joined back to every event (LazyFrame -> LazyFrame).

Windows are time buckets (``cfg.features.window``, default one day) in column ``_bucket``. Each
function adds parameter-free statistics; detectors apply the thresholds. Every function needs only
the rows of its grouping key (source, prefix, ASN or account), so the stage can run per shard.
"""

from __future__ import annotations

import polars as pl

from detector.features import expressions as x
from detector.features.baseline import prior_col
from detector.schema import C

BUCKET = "_bucket"
SORT_KEYS: tuple[str, ...] = (C.TIMESTAMP, C.ACCOUNT, C.SOURCE_IP, C.SOURCE_FILE, C.LINE_NUMBER)


def prepare(lf: pl.LazyFrame, window: str) -> pl.LazyFrame:
    """Sort in the documented order, number the events and add the window bucket."""
    return (
        lf.sort(list(SORT_KEYS), nulls_last=True, maintain_order=True)
        .with_row_index(C.EVENT_ID)
        .with_columns(
            pl.col(C.EVENT_ID).cast(pl.UInt64),
            pl.col(C.TIMESTAMP).dt.truncate(window).alias(BUCKET),
            x.failed_attempts().alias("_fa"),
            pl.when(x.is_login()).then(x.attempts()).otherwise(0).alias("_att"),
            x.is_success().cast(pl.Int64).alias("_ok"),
        )
    )


def _per(keys: list[str], prefix: str) -> list[pl.Expr]:
    """Attack statistics of the entity ``keys`` within the bucket."""
    fa, att = pl.col("_fa"), pl.col("_att")
    failed = x.is_failed()
    over = [BUCKET, *keys]
    return [
        fa.sum().over(over).alias(f"{prefix}_failures"),
        pl.col(C.ACCOUNT).filter(failed).n_unique().over(over).cast(pl.Int64).alias(f"{prefix}_accounts"),
        pl.col(C.SOURCE_IP).filter(failed).n_unique().over(over).cast(pl.Int64).alias(f"{prefix}_sources"),
        x.share(
            pl.when(x.is_unknown_user()).then(x.attempts()).otherwise(0).sum().over(over),
            att.sum().over(over),
        ).alias(f"{prefix}_unknown_share"),
        x.share(pl.col("_ok").sum().over(over), att.sum().over(over)).alias(f"{prefix}_success_share"),
    ]


def source_stats(lf: pl.LazyFrame) -> pl.LazyFrame:
    """What each source, /24 (/64) and ASN did in the window."""
    over = [BUCKET, C.SOURCE_IP]
    lf = lf.with_columns(
        pl.col("_att").sum().over(over).alias("src_attempts"),
        pl.col(C.PASSWORD_HASH)
        .filter(x.is_failed() & pl.col(C.PASSWORD_HASH).is_not_null())
        .n_unique()
        .over(over)
        .cast(pl.Int64)
        .alias("src_passwords"),
        *[e for e in _per([C.SOURCE_IP], "src") if not e.meta.output_name().endswith("_sources")],
        *[
            e
            for e in _per([C.PREFIX], "prefix")
            if e.meta.output_name() in ("prefix_accounts", "prefix_sources")
        ],
        *[e for e in _per([C.ASN], "asn") if e.meta.output_name() in ("asn_accounts", "asn_sources")],
    )
    pair = (
        lf.filter(x.is_failed())
        .group_by(BUCKET, C.SOURCE_IP, C.ACCOUNT)
        .agg(pl.col("_fa").sum().alias("_pf"))
    )
    worst = pair.group_by(BUCKET, C.SOURCE_IP).agg(pl.col("_pf").max().alias("src_max_tries_per_account"))
    return lf.join(worst, on=[BUCKET, C.SOURCE_IP], how="left", maintain_order="left", nulls_equal=True)


def account_stats(lf: pl.LazyFrame) -> pl.LazyFrame:
    """What was tried against each account in the window, and against it from each source."""
    over = [BUCKET, C.ACCOUNT]
    fa = pl.col("_fa")
    lf = lf.with_columns(
        (fa.cum_sum().over(over) - fa).alias("acct_failures_before"),
        fa.sum().over(over).alias("acct_failures"),
        pl.col(C.SOURCE_IP)
        .filter(x.is_failed())
        .n_unique()
        .over(over)
        .cast(pl.Int64)
        .alias("acct_fail_sources"),
        fa.sum().over([*over, C.SOURCE_IP]).alias("pair_failures"),
        pl.col(C.PASSWORD_HASH)
        .filter(x.is_failed() & pl.col(C.PASSWORD_HASH).is_not_null())
        .n_unique()
        .over([*over, C.SOURCE_IP])
        .cast(pl.Int64)
        .alias("pair_passwords"),
        # successful logins of the account from this prefix before the event (history + window)
        pl.col(prior_col(C.PREFIX)).alias("acct_prefix_logins"),
    )
    worst = (
        lf.filter(x.is_failed())
        .group_by(BUCKET, C.ACCOUNT)
        .agg(pl.col("pair_failures").max().alias("acct_max_fail_per_source"))
    )
    gaps = (
        lf.filter(x.is_failed())
        .group_by(BUCKET, C.ACCOUNT, C.SOURCE_IP)
        .agg(pl.col(C.TIMESTAMP).diff().dt.total_seconds(fractional=True).drop_nulls().alias("_g"))
        .with_columns(
            pl.when(pl.col("_g").list.len() >= 2)
            .then(pl.col("_g").list.std() / pl.col("_g").list.mean().clip(lower_bound=1e-9))
            .otherwise(None)
            .alias("pair_gap_cv"),
            pl.col("_g").list.median().alias("pair_gap_median_s"),
        )
        .drop("_g")
    )
    keys = [BUCKET, C.ACCOUNT]
    lf = lf.with_columns(
        # the pair's source is on a network the account had logged in from when it failed
        pl.col("acct_prefix_logins")
        .filter(x.is_failed())
        .max()
        .over([*over, C.SOURCE_IP])
        .alias("pair_usual_logins")
    )
    return lf.join(worst, on=keys, how="left", maintain_order="left", nulls_equal=True).join(
        gaps, on=[*keys, C.SOURCE_IP], how="left", maintain_order="left", nulls_equal=True
    )


def typo_stats(lf: pl.LazyFrame) -> pl.LazyFrame:
    """For each login: failures of the same account+source since its previous success, and the gap."""
    over = [C.ACCOUNT, C.SOURCE_IP]
    ok = pl.col("_ok")
    seg = ok.cum_sum().over(over) - ok
    fail_ts = pl.when(x.is_failed()).then(pl.col(C.TIMESTAMP))
    return lf.with_columns(_seg=seg).with_columns(
        pl.col("_fa").sum().over([*over, "_seg"]).alias("seg_failures"),
        (pl.col(C.TIMESTAMP) - fail_ts.max().over([*over, "_seg"]))
        .dt.total_seconds(fractional=True)
        .alias("_seg_gap_s"),
        # the success that closes a segment, seen from its failures
        pl.col(C.TIMESTAMP).filter(ok == 1).min().over([*over, "_seg"]).alias("_seg_end"),
    )


def travel_stats(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Distance and speed from the account's previous successful login (successes only)."""
    ok = lf.filter(x.is_success() & pl.col(C.ACCOUNT).is_not_null())
    prev = [
        C.TIMESTAMP,
        C.LATITUDE,
        C.LONGITUDE,
        C.ASN,
        C.PREFIX,
        C.PREFIX48,
        C.IS_VPN,
        C.IS_HOSTING,
        C.SOURCE_IP,
        C.COUNTRY,
        C.IP_LEGIT_ACCOUNTS,
    ]
    moved = ok.select(
        C.EVENT_ID,
        *[pl.col(c).shift(1).over(C.ACCOUNT).alias(f"_prev_{c}") for c in prev],
        pl.col(C.EVENT_ID).shift(1).over(C.ACCOUNT).alias("_prev_event_id"),
    )
    out = lf.join(moved, on=C.EVENT_ID, how="left", maintain_order="left")
    km = x.haversine_km(
        pl.col(f"_prev_{C.LATITUDE}"), pl.col(f"_prev_{C.LONGITUDE}"), pl.col(C.LATITUDE), pl.col(C.LONGITUDE)
    )
    hours = (pl.col(C.TIMESTAMP) - pl.col(f"_prev_{C.TIMESTAMP}")).dt.total_seconds(fractional=True) / 3600
    return out.with_columns(km.alias("travel_km")).with_columns(
        (pl.col("travel_km") / hours.clip(lower_bound=1 / 60)).alias("travel_speed_kmh")
    )


def volume_stats(lf: pl.LazyFrame, volumes: pl.DataFrame) -> pl.LazyFrame:
    """Download volume against the account's norm; sent recipients per hour."""
    hist = (
        volumes.lazy()
        .filter(pl.col("metric") == C.BYTES_OUT)
        .select(C.ACCOUNT, pl.col("n").alias("_hn"), pl.col("mean_log").alias("_hmean"))
    )
    logb = pl.col(C.BYTES_OUT).cast(pl.Float64).log1p()
    window_median = logb.median().over(C.ACCOUNT)
    pop_median = logb.median()
    norm = (
        pl.when(pl.col("_hn") >= 3)
        .then(pl.col("_hmean"))
        .otherwise(pl.coalesce(window_median, pop_median, pl.lit(0.0)))
    )
    hour = [C.ACCOUNT, pl.col(C.TIMESTAMP).dt.truncate("1h")]
    is_send = pl.col(C.ACTION) == "send"
    rcpt = pl.when(is_send).then(pl.col(C.RECIPIENTS).fill_null(1).cast(pl.Int64)).otherwise(0)
    return (
        lf.join(hist, on=C.ACCOUNT, how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col(C.BYTES_OUT).is_not_null())
            .then(logb - norm)
            .otherwise(0.0)
            .alias("download_log_ratio"),
            pl.when(is_send).then(rcpt.sum().over(hour)).otherwise(0).alias("send_recipients_hour"),
            pl.when(is_send)
            .then(is_send.cast(pl.Int64).sum().over(hour))
            .otherwise(0)
            .alias("send_messages_hour"),
            # a successful login from a new ASN earlier in the window (for post-login behaviour)
            (x.is_success() & (pl.col("is_new_asn") == 1))
            .cast(pl.Int8)
            .cum_max()
            .over(BUCKET, C.ACCOUNT)
            .alias("acct_new_network_login_before"),
        )
        .drop("_hn", "_hmean")
    )


def session_stats(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Link the rows of one session (account + session id): its login, its volumes.

    Dovecot logs the traffic on a logout line without the client address; the login line of the same
    session has it. ``_session_login`` is the event id of the session's successful login.
    """
    key = [C.ACCOUNT, C.SESSION_ID]
    has = pl.col(C.SESSION_ID).is_not_null()
    return lf.with_columns(
        pl.when(has)
        .then(pl.col(C.EVENT_ID).filter(x.is_success()).first().over(key))
        .otherwise(None)
        .alias("_session_login"),
        pl.when(has)
        .then(pl.col(C.BYTES_OUT).max().over(key))
        .otherwise(pl.col(C.BYTES_OUT))
        .fill_null(0)
        .alias("session_bytes_out"),
        pl.when(has)
        .then(pl.col("download_log_ratio").max().over(key))
        .otherwise(pl.col("download_log_ratio"))
        .alias("session_download_log_ratio"),
        pl.when(has)
        .then(pl.col("send_recipients_hour").max().over(key))
        .otherwise(pl.col("send_recipients_hour"))
        .alias("session_recipients_hour"),
    )
