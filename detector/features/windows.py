"""Per-window statistics joined back to every event (LazyFrame -> LazyFrame).

Windows are time buckets (``cfg.features.window``, default one day) in column ``_bucket``. Each
function adds parameter-free statistics; detectors apply the thresholds. Every function needs only
the rows of its grouping key (source, prefix, ASN or account), so the stage can run per shard.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from detector.features import expressions as x
from detector.features.baseline import prior_col
from detector.schema import C

BUCKET = "_bucket"
SORT_KEYS: tuple[str, ...] = (C.TIMESTAMP, C.ACCOUNT, C.SOURCE_IP, C.SOURCE_FILE, C.LINE_NUMBER)


def number(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Sort in the documented order and number the events (``event_id``, UInt64)."""
    return (
        lf.sort(list(SORT_KEYS), nulls_last=True, maintain_order=True)
        .with_row_index(C.EVENT_ID)
        .with_columns(pl.col(C.EVENT_ID).cast(pl.UInt64))
    )


def work_columns(lf: pl.LazyFrame, window: str) -> pl.LazyFrame:
    """The window bucket and the per-row weights every window step reads (``_fa``, ``_att``, ``_ok``)."""
    return lf.with_columns(
        pl.col(C.TIMESTAMP).dt.truncate(window).alias(BUCKET),
        x.failed_attempts().alias("_fa"),
        pl.when(x.is_login()).then(x.attempts()).otherwise(0).alias("_att"),
        x.is_success().cast(pl.Int64).alias("_ok"),
    )


def prepare(lf: pl.LazyFrame, window: str) -> pl.LazyFrame:
    """Sort in the documented order, number the events and add the window bucket."""
    return work_columns(number(lf), window)


def _join(lf: pl.LazyFrame, stats: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    return lf.join(stats, on=keys, how="left", nulls_equal=True)


def ordered_account_stats(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Statistics that need time order (the frame as sorted by :func:`prepare`)."""
    fa = pl.col("_fa")
    return lf.with_columns(
        (fa.cum_sum().over(BUCKET, C.ACCOUNT) - fa).alias("acct_failures_before"),
        # successful logins of the account from this prefix before the event (history + window)
        pl.col(prior_col(C.PREFIX)).alias("acct_prefix_logins"),
    )


def _failure_gaps(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Seconds between consecutive failures of each group (``_g``), from the failed rows only.

    ``lf`` is in time order, so the gaps need no per-group sort; grouping only the failures is
    what makes this cheap (most pairs never fail).
    """
    failed = lf.filter(x.is_failed() & pl.col(C.TIMESTAMP).is_not_null())
    gaps = pl.col(C.TIMESTAMP).diff().dt.total_seconds(fractional=True).drop_nulls()
    return failed.group_by(keys).agg(gaps.alias("_g"))


def _pairs(lf: pl.LazyFrame) -> pl.LazyFrame:
    """(bucket, account, source): failed attempts and whether any failed (the cross-account part)."""
    return lf.group_by(BUCKET, C.ACCOUNT, C.SOURCE_IP).agg(
        pl.col("_fa").sum().alias("pair_failures"), x.is_failed().any().alias("_pf_any")
    )


SOURCE_TABLE_COLUMNS: tuple[str, ...] = (
    BUCKET,
    "_fa",
    "_att",
    "_ok",
    C.ACCOUNT,
    C.SOURCE_IP,
    C.PREFIX,
    C.ASN,
    C.ACTION,
    C.OUTCOME,
    C.ATTEMPTS,
    C.PASSWORD_HASH,
)
"""Columns :func:`source_tables` reads (after :func:`work_columns`)."""


def source_tables(lf: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """Window statistics keyed by source, prefix or ASN: they read the rows of every account.

    ``src`` and ``src_pairs`` are keyed by (bucket, source_ip), ``prefix`` by (bucket, prefix),
    ``asn`` by (bucket, asn). Computed once over all events (a few columns) when the features run
    per account shard, and joined to each shard by :func:`entity_stats`.
    """
    failed = x.is_failed()
    hashed = failed & pl.col(C.PASSWORD_HASH).is_not_null()
    with_fail = pl.col("_pf_any")
    src_pairs = (
        _pairs(lf)
        .group_by(BUCKET, C.SOURCE_IP)
        .agg(
            with_fail.sum().cast(pl.Int64).alias("src_accounts"),
            pl.col("pair_failures").filter(with_fail).max().alias("src_max_tries_per_account"),
        )
    )
    att = pl.col("_att").sum()
    unknown = pl.when(x.is_unknown_user()).then(x.attempts()).otherwise(0).sum()
    src = lf.group_by(BUCKET, C.SOURCE_IP).agg(
        att.alias("src_attempts"),
        pl.col("_fa").sum().alias("src_failures"),
        pl.col(C.PASSWORD_HASH).filter(hashed).n_unique().cast(pl.Int64).alias("src_passwords"),
        x.share(unknown, att).alias("src_unknown_share"),
        x.share(pl.col("_ok").sum(), att).alias("src_success_share"),
    )
    nets = {
        name: lf.group_by(BUCKET, col).agg(
            pl.col(C.ACCOUNT).filter(failed).n_unique().cast(pl.Int64).alias(f"{name}_accounts"),
            pl.col(C.SOURCE_IP).filter(failed).n_unique().cast(pl.Int64).alias(f"{name}_sources"),
        )
        for col, name in ((C.PREFIX, "prefix"), (C.ASN, "asn"))
    }
    return {"src": src, "src_pairs": src_pairs, **nets}


def entity_stats(lf: pl.LazyFrame, tables: dict[str, pl.DataFrame] | None = None) -> pl.LazyFrame:
    """What each source, /24 (/64), ASN, account and (account, source) pair did in the window.

    Group-bys joined to a narrow copy of the keys, put back in event order and glued to the frame
    (``lf`` must be in event-id order, as :func:`prepare` leaves it). ``tables`` are the
    :func:`source_tables` of all events when ``lf`` holds one account shard (default: of ``lf``).
    """
    failed = x.is_failed()
    hashed = failed & pl.col(C.PASSWORD_HASH).is_not_null()
    pair_keys = [BUCKET, C.ACCOUNT, C.SOURCE_IP]
    pair = (
        lf.group_by(pair_keys)
        .agg(
            pl.col("_fa").sum().alias("pair_failures"),
            failed.any().alias("_pf_any"),
            pl.col(C.PASSWORD_HASH).filter(hashed).n_unique().cast(pl.Int64).alias("pair_passwords"),
            pl.col("acct_prefix_logins").filter(failed).max().alias("pair_usual_logins"),
        )
        .join(_failure_gaps(lf, pair_keys), on=pair_keys, how="left", nulls_equal=True)
        .with_columns(
            pl.when(pl.col("_g").list.len() >= 2)
            .then(pl.col("_g").list.std() / pl.col("_g").list.mean().clip(lower_bound=1e-9))
            .otherwise(None)
            .alias("pair_gap_cv"),
            pl.col("_g").list.median().alias("pair_gap_median_s"),
        )
        .drop("_g")
    )
    with_fail = pl.col("_pf_any")
    acct = pair.group_by(BUCKET, C.ACCOUNT).agg(
        pl.col("pair_failures").sum().alias("acct_failures"),
        with_fail.sum().cast(pl.Int64).alias("acct_fail_sources"),
        pl.col("pair_failures").filter(with_fail).max().alias("acct_max_fail_per_source"),
    )
    by_source = source_tables(lf) if tables is None else {k: v.lazy() for k, v in tables.items()}
    # joins on a narrow frame, back in event order, then glued to the wide frame side by side
    narrow = lf.select(C.EVENT_ID, BUCKET, C.ACCOUNT, C.SOURCE_IP, C.PREFIX, C.ASN)
    out = _join(narrow, pair.drop("_pf_any"), pair_keys)
    out = _join(out, acct, [BUCKET, C.ACCOUNT])
    out = _join(out, by_source["src"], [BUCKET, C.SOURCE_IP])
    out = _join(out, by_source["src_pairs"], [BUCKET, C.SOURCE_IP])
    out = _join(out, by_source["prefix"], [BUCKET, C.PREFIX])
    out = _join(out, by_source["asn"], [BUCKET, C.ASN])
    stats = out.sort(C.EVENT_ID).drop(C.EVENT_ID, BUCKET, C.ACCOUNT, C.SOURCE_IP, C.PREFIX, C.ASN)
    return pl.concat([lf, stats], how="horizontal")


def _glue(lf: pl.LazyFrame, stats: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Per-group ``stats`` joined to a narrow copy of the keys (event order kept), glued beside ``lf``.

    One group-by and one join instead of a window function per column: with hundreds of thousands
    of small groups (sessions, account+source pairs) each window costs as much as the whole join.
    """
    narrow = lf.select(keys).join(stats, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return pl.concat([lf, narrow.drop(keys)], how="horizontal")


def typo_stats(lf: pl.LazyFrame) -> pl.LazyFrame:
    """For each login: failures of the same account+source since its previous success, and the gap."""
    over = [C.ACCOUNT, C.SOURCE_IP]
    ok = pl.col("_ok")
    seg = ok.cum_sum().over(over) - ok
    fail_ts = pl.when(x.is_failed()).then(pl.col(C.TIMESTAMP))
    keys = [*over, "_seg"]
    lf = lf.with_columns(_seg=seg)
    stats = lf.group_by(keys).agg(
        pl.col("_fa").sum().alias("seg_failures"),
        fail_ts.max().alias("_seg_last_fail"),
        # the success that closes a segment, seen from its failures
        pl.col(C.TIMESTAMP).filter(ok == 1).min().alias("_seg_end"),
    )
    return (
        _glue(lf, stats, keys)
        .with_columns(
            (pl.col(C.TIMESTAMP) - pl.col("_seg_last_fail"))
            .dt.total_seconds(fractional=True)
            .alias("_seg_gap_s")
        )
        .drop("_seg_last_fail")
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
    aligned = lf.select(C.EVENT_ID).join(moved, on=C.EVENT_ID, how="left", maintain_order="left")
    out = pl.concat([lf, aligned.drop(C.EVENT_ID)], how="horizontal")
    km = x.haversine_km(
        pl.col(f"_prev_{C.LATITUDE}"), pl.col(f"_prev_{C.LONGITUDE}"), pl.col(C.LATITUDE), pl.col(C.LONGITUDE)
    )
    hours = (pl.col(C.TIMESTAMP) - pl.col(f"_prev_{C.TIMESTAMP}")).dt.total_seconds(fractional=True) / 3600
    return out.with_columns(km.alias("travel_km")).with_columns(
        (pl.col("travel_km") / hours.clip(lower_bound=1 / 60)).alias("travel_speed_kmh")
    )


def download_median() -> pl.Expr:
    """The window's median log1p(bytes_out) over every event (an account's norm when it has none)."""
    return pl.col(C.BYTES_OUT).cast(pl.Float64).log1p().median()


def night_download_median(lf: pl.LazyFrame) -> float | None:
    """:func:`download_median` of every event of ``lf``, holding 16 bytes an event instead of 32.

    ``log1p`` keeps the order of byte counts, so the median's two middle values are those of the
    counts themselves (found by :func:`numpy.partition` on the non-null counts); polars' median of
    those two gives its own interpolation, so the result is the whole column's to the bit.
    """
    counts = (
        lf.select(pl.col(C.BYTES_OUT).cast(pl.Int64)).drop_nulls().collect(engine="streaming").to_series()
    )
    n = counts.len()
    if n == 0:
        return None
    values = counts.to_numpy()
    del counts
    if values.min() < 0:  # below 0, log1p is not defined everywhere: the plain median
        return lf.select(download_median()).collect().item()
    middle = np.partition(values, [(n - 1) // 2, n // 2])[[(n - 1) // 2, n // 2]]
    return pl.Series(C.BYTES_OUT, middle, dtype=pl.Int64).to_frame().select(download_median()).item()


def volume_stats(lf: pl.LazyFrame, volumes: pl.DataFrame, median: pl.Expr | None = None) -> pl.LazyFrame:
    """Download volume against the account's norm; sent recipients per hour.

    ``median``: the :func:`download_median` of all events as a literal when ``lf`` holds one
    account shard (default: computed over ``lf``).
    """
    hist = (
        volumes.lazy()
        .filter(pl.col("metric") == C.BYTES_OUT)
        .select(C.ACCOUNT, pl.col("n").alias("_hn"), pl.col("mean_log").alias("_hmean"))
    )
    logb = pl.col(C.BYTES_OUT).cast(pl.Float64).log1p()
    window_median = logb.median().over(C.ACCOUNT)
    pop_median = download_median() if median is None else median
    norm = (
        pl.when(pl.col("_hn") >= 3)
        .then(pl.col("_hmean"))
        .otherwise(pl.coalesce(window_median, pop_median, pl.lit(0.0)))
    )
    hour = [C.ACCOUNT, pl.col(C.TIMESTAMP).dt.truncate("1h")]
    is_send = pl.col(C.ACTION) == "send"
    rcpt = pl.when(is_send).then(pl.col(C.RECIPIENTS).fill_null(1).cast(pl.Int64)).otherwise(0)
    # the account's norm joined to the account column alone, glued beside the wide frame (a join of
    # the wide frame would copy every column)
    norms = lf.select(C.ACCOUNT).join(hist, on=C.ACCOUNT, how="left", maintain_order="left")
    return (
        pl.concat([lf, norms.drop(C.ACCOUNT)], how="horizontal")
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
    stats = (
        lf.filter(has)
        .group_by(key)
        .agg(
            pl.col(C.EVENT_ID).filter(x.is_success()).first().alias("_session_login"),
            pl.col(C.BYTES_OUT).max().alias("_s_bytes"),
            pl.col("download_log_ratio").max().alias("_s_ratio"),
            pl.col("send_recipients_hour").max().alias("_s_rcpt"),
        )
    )
    return (
        _glue(lf, stats, key)
        .with_columns(
            pl.when(has)
            .then(pl.col("_s_bytes"))
            .otherwise(pl.col(C.BYTES_OUT))
            .fill_null(0)
            .alias("session_bytes_out"),
            pl.when(has)
            .then(pl.col("_s_ratio"))
            .otherwise(pl.col("download_log_ratio"))
            .alias("session_download_log_ratio"),
            pl.when(has)
            .then(pl.col("_s_rcpt"))
            .otherwise(pl.col("send_recipients_hour"))
            .alias("session_recipients_hour"),
        )
        .drop("_s_bytes", "_s_ratio", "_s_rcpt")
    )
