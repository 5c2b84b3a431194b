"""Joining lines that describe one attempt, so that each attempt counts once.

* Dovecot two-line failure: an ``auth``/``auth-worker`` passdb line and the ``*-login`` line of
  the same session (joined on host + session id, or on host + ip + account within
  :data:`LOGIN_WINDOW` when there is no session id). The auth line stays the event (account,
  reason, password hash) and takes service, TLS, method, local address and attempts from the
  login line; the login line becomes ``noise:merged``.
* Dovecot proxy failures: each ``proxy(user): Login failed to host:port`` line is one attempt; the
  session's ``Disconnected (proxy dest auth failed)`` line (no count of its own) becomes
  ``noise:merged`` where one exists (host + session id, or host + ip + account within
  :data:`LOGIN_WINDOW` when a line has no session id), so a client retrying on one connection
  counts every try, and a session counts at least once.
* Exim: a call ``dropped: too many syntax or protocol errors (last command was "AUTH ...")`` is
  one refused attempt only where no AUTH line of that client (``SMTP protocol error in "AUTH``,
  ``authenticator failed``) on that host precedes it within :data:`LOGIN_WINDOW`; otherwise
  it closes attempts already counted and becomes ``noise:merged``.
* Postfix smtpd sessions (lines of one smtpd process between two ``disconnect from``): a SASL
  warning makes ``lost connection after AUTH`` and ``disconnect ... auth=0/N`` of the same session
  ``noise:merged``; a ``lost connection after AUTH`` does the same to the disconnect counter.
* Postfix with Dovecot SASL: the Dovecot auth line with the same host and address within
  :data:`SASL_WINDOW` (join_asof) gives the Postfix failure its account, reason and password
  hash, and becomes ``noise:merged``.
* Postfix ``qmgr`` ``from=`` lines joined on host + queue id to the authenticated ``client=``
  line become ``send`` events.

Works on an eager frame of parsed rows (one batch plus the rows carried over from the previous
batch). Every merged row gets ``_partner_ts``, the time of the row that absorbed it, so that the
caller can decide which rows are settled and which to carry into the next batch.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from detector.ingest.parsers.dovecot import PROXY_REASON
from detector.ingest.parsers.exim import DROP_STAGE, PROTO_STAGE, SASL_FAIL_STAGE
from detector.ingest.registry import KIND
from detector.schema import UTC_US, C

STAGE, QID, SMTPD, RID, PARTNER = "_stage", "_qid", "_smtpd", "_rid", "_partner_ts"
MERGED = "noise:merged"
LOGIN_WINDOW = timedelta(seconds=60)
SASL_WINDOW = timedelta(seconds=4)
EVENT = pl.col(KIND) == "event"


def correlate(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows in (parsed, with ``_rid``), the same rows out with merges applied."""
    if PARTNER not in rows.columns:
        rows = rows.with_columns(pl.lit(None, UTC_US).alias(PARTNER))
    if rows[STAGE].null_count() == len(rows):
        return rows
    # each step reads only the rows of its stages; updates are scattered by row id, so the rows
    # stay where they are (no split into candidates and others, no concatenation of wide frames)
    if not rows[RID].is_sorted():
        rows = rows.sort(RID)
    present = set(rows[STAGE].unique().to_list())
    cand = rows.with_columns(_h=pl.col(C.HOST).fill_null(""))
    for step, needs in STEPS:
        # a step whose stages are absent changes nothing: its searches of the batch are skipped
        if all(present.intersection(any_of) for any_of in needs):
            cand = step(cand)
    return cand.drop("_h")


def _apply(df: pl.DataFrame, upd: pl.DataFrame) -> pl.DataFrame:
    """Overwrite ``df`` cells with the non-null cells of ``upd`` (keyed by ``_rid``; ``df`` is
    sorted by ``_rid``), by scattering into copies of the touched columns: no join."""
    if upd.is_empty():
        return df
    upd = upd.unique(RID, keep="first")
    idx = df[RID].search_sorted(upd[RID])
    cols = {}
    for c in upd.columns:
        if c == RID:
            continue
        values = upd[c]
        keep = values.is_not_null()
        if not keep.any():
            continue
        col = df[c].clone()
        col.scatter(idx.filter(keep), values.filter(keep).cast(df.schema[c]))
        cols[c] = col
    return df.with_columns(**cols)


def _merged(rids: pl.Series, partner_ts: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({RID: rids, KIND: pl.repeat(MERGED, len(rids), eager=True), PARTNER: partner_ts})


def _pick(cand: pl.DataFrame, cond: pl.Expr, *cols: str | pl.Expr) -> pl.DataFrame:
    """The rows of ``cand`` where ``cond`` holds, only ``cols``: the columns are chosen before the
    rows are filtered (an eager filter copies every column of the wide frame, most of the cost
    of correlating a batch)."""
    return cand.lazy().filter(cond).select(cols).collect(engine="in-memory")


def _dovecot_pam(cand: pl.DataFrame) -> pl.DataFrame:
    """A ``pam_unix(dovecot:auth)`` line next to the passdb line of the same attempt counts once."""
    pam = _pick(cand, (pl.col(STAGE) == "dv_pam") & EVENT, RID, C.TIMESTAMP, "_h", C.SOURCE_IP)
    if pam.is_empty():
        return cand
    auth = _pick(cand, (pl.col(STAGE) == "dv_auth") & EVENT, C.TIMESTAMP, "_h", C.SOURCE_IP)
    if auth.is_empty():
        return cand
    m = pam.sort(C.TIMESTAMP).join_asof(
        auth.sort(C.TIMESTAMP).select(
            pl.col(C.TIMESTAMP).alias("_ats"), pl.col(C.TIMESTAMP), "_h", C.SOURCE_IP
        ),
        on=C.TIMESTAMP,
        by=["_h", C.SOURCE_IP],
        strategy="nearest",
        tolerance=SASL_WINDOW,
        check_sortedness=False,
    )
    m = m.filter(pl.col("_ats").is_not_null())
    return _apply(cand, _merged(m[RID], m["_ats"]))


def _dovecot_proxy(cand: pl.DataFrame) -> pl.DataFrame:
    keys = [RID, C.TIMESTAMP, "_h", C.SESSION_ID, C.SOURCE_IP, C.ACCOUNT]
    tries = _pick(cand, (pl.col(STAGE) == "dv_proxy_fail") & EVENT, *keys)
    if tries.is_empty():
        return cand
    ends = _pick(cand, (pl.col(STAGE) == "dv_login_fail") & EVENT & (pl.col(C.REASON) == PROXY_REASON), *keys)
    if ends.is_empty():
        return cand
    last = tries.group_by("_h", C.SESSION_ID).agg(pl.col(C.TIMESTAMP).max().alias("_tts"))
    by_session = ends.filter(pl.col(C.SESSION_ID).is_not_null()).join(
        last.filter(pl.col(C.SESSION_ID).is_not_null()), on=["_h", C.SESSION_ID], how="inner"
    )
    near = (
        ends.filter(pl.col(C.ACCOUNT).is_not_null() & ~pl.col(RID).is_in(by_session[RID].implode()))
        .sort(C.TIMESTAMP)
        .join_asof(
            tries.filter(pl.col(C.ACCOUNT).is_not_null())
            .select(
                pl.col(C.TIMESTAMP).alias("_tts"),
                C.TIMESTAMP,
                "_h",
                C.SOURCE_IP,
                C.ACCOUNT,
                pl.col(C.SESSION_ID).alias("_tsession"),
            )
            .sort(C.TIMESTAMP),
            on=C.TIMESTAMP,
            by=["_h", C.SOURCE_IP, C.ACCOUNT],
            strategy="backward",
            tolerance=LOGIN_WINDOW,
            check_sortedness=False,
        )
        .filter(
            pl.col("_tts").is_not_null() & (pl.col(C.SESSION_ID).is_null() | pl.col("_tsession").is_null())
        )
    )
    gone = pl.concat([by_session.select(RID, "_tts"), near.select(RID, "_tts")], how="vertical_relaxed")
    return _apply(cand, _merged(gone[RID], gone["_tts"]))


def _exim_drops(cand: pl.DataFrame) -> pl.DataFrame:
    drops = _pick(cand, (pl.col(STAGE) == DROP_STAGE) & EVENT, RID, C.TIMESTAMP, "_h", C.SOURCE_IP)
    if drops.is_empty():
        return cand
    auth = (pl.col(STAGE) == PROTO_STAGE) | (
        (pl.col(STAGE) == SASL_FAIL_STAGE) & (pl.col(C.DAEMON) == "exim")
    )
    tries = _pick(cand, auth & EVENT, pl.col(C.TIMESTAMP).alias("_tts"), C.TIMESTAMP, "_h", C.SOURCE_IP)
    if tries.is_empty():
        return cand
    m = drops.sort(C.TIMESTAMP).join_asof(
        tries.sort(C.TIMESTAMP),
        on=C.TIMESTAMP,
        by=["_h", C.SOURCE_IP],
        strategy="backward",
        tolerance=LOGIN_WINDOW,
        check_sortedness=False,
    )
    m = m.filter(pl.col("_tts").is_not_null())
    return _apply(cand, _merged(m[RID], m["_tts"]))


def spread_attempts(n: pl.Expr, k: pl.Expr, i: pl.Expr) -> pl.Expr:
    """Attempts of the ``i``-th (0-based) of ``k`` auth lines paired with one ``-login`` line that
    reports ``n`` attempts: one each, the last carries the remainder (at least one)."""
    return pl.when(i == k - 1).then(pl.max_horizontal(n.fill_null(1) - k + 1, pl.lit(1))).otherwise(1)


def _dovecot_pairs(cand: pl.DataFrame) -> pl.DataFrame:
    keys = [RID, C.TIMESTAMP, "_h", C.SESSION_ID, C.SOURCE_IP, C.ACCOUNT]
    auth = _pick(cand, pl.col(STAGE).is_in(["dv_auth", "dv_pam"]) & EVENT, *keys)
    login = _pick(
        cand,
        (pl.col(STAGE) == "dv_login_fail") & EVENT,
        *keys,
        C.SERVICE,
        C.TLS,
        C.AUTH_METHOD,
        C.LOCAL_IP,
        C.SOURCE_PORT,
        C.ATTEMPTS,
    )
    if auth.is_empty() or login.is_empty():
        return cand
    lcols = [
        pl.col(RID).alias("_lrid"),
        pl.col(C.TIMESTAMP).alias("_lts"),
        pl.col(C.SERVICE).alias("_service"),
        pl.col(C.TLS).alias("_tls"),
        pl.col(C.AUTH_METHOD).alias("_method"),
        pl.col(C.LOCAL_IP).alias("_lip"),
        pl.col(C.SOURCE_PORT).alias("_port"),
        pl.col(C.SESSION_ID).alias("_session"),
        pl.col(C.ATTEMPTS).alias("_n"),
    ]
    by_session = (
        auth.filter(pl.col(C.SESSION_ID).is_not_null())
        .select(RID, C.TIMESTAMP, "_h", C.SESSION_ID)
        .join(
            login.filter(pl.col(C.SESSION_ID).is_not_null()).select("_h", C.SESSION_ID, *lcols),
            on=["_h", C.SESSION_ID],
            how="inner",
        )
    )
    rest_a = auth.filter(~pl.col(RID).is_in(by_session[RID].implode()))
    rest_l = login.filter(~pl.col(RID).is_in(by_session["_lrid"].implode()))
    near = (
        rest_a.select(RID, C.TIMESTAMP, "_h", C.SOURCE_IP, C.ACCOUNT, pl.col(C.SESSION_ID).alias("_asession"))
        .filter(pl.col(C.ACCOUNT).is_not_null() & pl.col(C.SOURCE_IP).is_not_null())
        .sort(C.TIMESTAMP)
        .join_asof(
            rest_l.select(pl.col(C.TIMESTAMP), "_h", C.SOURCE_IP, C.ACCOUNT, *lcols)
            .filter(pl.col(C.ACCOUNT).is_not_null())
            .sort(C.TIMESTAMP),
            on=C.TIMESTAMP,
            by=["_h", C.SOURCE_IP, C.ACCOUNT],
            strategy="forward",
            tolerance=LOGIN_WINDOW,
            check_sortedness=False,
        )
        # different session ids mean different sessions: the address fallback is for lines without one
        .filter(
            pl.col("_lrid").is_not_null() & (pl.col("_asession").is_null() | pl.col("_session").is_null())
        )
    )
    pairs = pl.concat(
        [
            by_session.select(RID, C.TIMESTAMP, *[c.meta.output_name() for c in lcols]),
            near.select(RID, C.TIMESTAMP, *[c.meta.output_name() for c in lcols]),
        ],
        how="vertical_relaxed",
    )
    if pairs.is_empty():
        return cand
    pairs = pairs.sort(C.TIMESTAMP).with_columns(
        _k=pl.len().over("_lrid"),
        _i=pl.int_range(pl.len()).over("_lrid"),
        _last=pl.col(C.TIMESTAMP).max().over("_lrid"),
    )
    attempts = spread_attempts(pl.col("_n"), pl.col("_k"), pl.col("_i"))
    upd_auth = pairs.select(
        RID,
        pl.col("_service").alias(C.SERVICE),
        pl.col("_tls").alias(C.TLS),
        pl.col("_method").alias(C.AUTH_METHOD),
        pl.col("_lip").alias(C.LOCAL_IP),
        pl.col("_port").alias(C.SOURCE_PORT),
        pl.col("_session").alias(C.SESSION_ID),
        attempts.cast(pl.Int32).alias(C.ATTEMPTS),
    )
    cand = _apply(cand, upd_auth)
    gone = pairs.group_by("_lrid").agg(pl.col("_last").first())
    return _apply(cand, _merged(gone["_lrid"], gone["_last"]))


def _postfix_sessions(cand: pl.DataFrame) -> pl.DataFrame:
    stages = ["pf_sasl_fail", "pf_after_auth", "pf_disconnect", "pf_boundary"]
    # only the columns the session logic reads: sorting and joining a narrow frame is cheap
    s = _pick(cand, pl.col(STAGE).is_in(stages), RID, STAGE, KIND, "_h", SMTPD, C.TIMESTAMP, C.LINE_NUMBER)
    # only smtpd processes with an AUTH counter or lost-after-AUTH event can need a merge
    busy = (
        s.filter(pl.col(STAGE).is_in(["pf_after_auth", "pf_disconnect"]) & EVENT).select("_h", SMTPD).unique()
    )
    if busy.is_empty():
        return cand
    s = s.join(busy, on=["_h", SMTPD], how="semi", nulls_equal=True)
    disc = pl.col(STAGE).is_in(["pf_disconnect", "pf_boundary"])
    s = (
        s.sort(["_h", SMTPD, C.TIMESTAMP, C.LINE_NUMBER])
        .with_columns(_seq=disc.cast(pl.Int32).cum_sum().shift(1, fill_value=0).over(["_h", SMTPD]))
        .with_columns(
            _warn_ts=pl.col(C.TIMESTAMP)
            .filter((pl.col(STAGE) == "pf_sasl_fail") & EVENT)
            .max()
            .over(["_h", SMTPD, "_seq"]),
            _after_ts=pl.col(C.TIMESTAMP)
            .filter((pl.col(STAGE) == "pf_after_auth") & EVENT)
            .max()
            .over(["_h", SMTPD, "_seq"]),
        )
    )
    after = s.filter((pl.col(STAGE) == "pf_after_auth") & EVENT & pl.col("_warn_ts").is_not_null())
    dis = s.filter(
        (pl.col(STAGE) == "pf_disconnect")
        & EVENT
        & (pl.col("_warn_ts").is_not_null() | pl.col("_after_ts").is_not_null())
    )
    upd = pl.concat(
        [
            _merged(after[RID], after["_warn_ts"]),
            _merged(dis[RID], dis.select(pl.coalesce("_warn_ts", "_after_ts")).to_series()),
        ]
    )
    return _apply(cand, upd)


def _postfix_dovecot_sasl(cand: pl.DataFrame) -> pl.DataFrame:
    pf = _pick(
        cand, (pl.col(STAGE) == "pf_sasl_fail") & EVENT, RID, C.TIMESTAMP, "_h", C.SOURCE_IP, C.ACCOUNT
    )
    if pf.is_empty():
        return cand
    dv = _pick(
        cand,
        (pl.col(STAGE) == "dv_auth") & EVENT & pl.col(C.SERVICE).is_null(),
        RID,
        C.TIMESTAMP,
        "_h",
        C.SOURCE_IP,
        C.ACCOUNT,
        C.REASON,
        C.PASSWORD_HASH,
        C.OUTCOME,
    )
    if dv.is_empty():
        return cand
    m = (
        pf.select(RID, C.TIMESTAMP, "_h", C.SOURCE_IP, pl.col(C.ACCOUNT).alias("_own"))
        .sort(C.TIMESTAMP)
        .join_asof(
            dv.sort(C.TIMESTAMP).select(
                pl.col(C.TIMESTAMP),
                pl.col(C.TIMESTAMP).alias("_dts"),
                "_h",
                C.SOURCE_IP,
                pl.col(RID).alias("_drid"),
                pl.col(C.ACCOUNT).alias("_acc"),
                pl.col(C.REASON).alias("_reason"),
                pl.col(C.PASSWORD_HASH).alias("_hash"),
                pl.col(C.OUTCOME).alias("_outcome"),
            ),
            on=C.TIMESTAMP,
            by=["_h", C.SOURCE_IP],
            strategy="nearest",
            tolerance=SASL_WINDOW,
            check_sortedness=False,
        )
        .filter(pl.col("_drid").is_not_null())
        .unique("_drid", keep="first")
    )
    if m.is_empty():
        return cand
    upd_pf = m.select(
        RID,
        pl.coalesce("_own", "_acc").alias(C.ACCOUNT),
        pl.col("_reason").alias(C.REASON),
        pl.col("_hash").alias(C.PASSWORD_HASH),
        pl.col("_outcome").alias(C.OUTCOME),
    )
    cand = _apply(cand, upd_pf)
    return _apply(cand, _merged(m["_drid"], m[C.TIMESTAMP]))


def _postfix_sends(cand: pl.DataFrame) -> pl.DataFrame:
    q = _pick(cand, pl.col(STAGE) == "pf_qmgr", RID, "_h", QID, C.TIMESTAMP)
    if q.is_empty():
        return cand
    q = q.sort(C.TIMESTAMP).with_columns(_first=pl.int_range(pl.len()).over(["_h", QID]) == 0)
    clients = _pick(
        cand,
        (pl.col(STAGE) == "pf_client") & EVENT,
        "_h",
        QID,
        C.ACCOUNT,
        C.SOURCE_IP,
        C.SOURCE_PORT,
        C.AUTH_METHOD,
        C.SERVICE,
    ).unique(["_h", QID], keep="last")
    m = (
        q.filter("_first")
        .select(RID, "_h", QID)
        .join(
            clients.select(
                "_h",
                QID,
                pl.col(C.ACCOUNT),
                pl.col(C.SOURCE_IP),
                pl.col(C.SOURCE_PORT),
                pl.col(C.AUTH_METHOD),
                pl.col(C.SERVICE),
            ),
            on=["_h", QID],
            how="inner",
        )
    )
    upd = m.select(
        RID,
        C.ACCOUNT,
        C.SOURCE_IP,
        C.SOURCE_PORT,
        C.AUTH_METHOD,
        C.SERVICE,
        pl.repeat("event", len(m), eager=True).alias(KIND),
    )
    repeats = q.filter(~pl.col("_first")).select(RID, pl.repeat("noise:qmgr_repeat", pl.len()).alias(KIND))
    return _apply(_apply(cand, upd), repeats)


STEPS = (
    (_dovecot_pam, ({"dv_pam"}, {"dv_auth"})),
    (_dovecot_proxy, ({"dv_proxy_fail"}, {"dv_login_fail"})),
    (_dovecot_pairs, ({"dv_auth", "dv_pam"}, {"dv_login_fail"})),
    (_exim_drops, ({DROP_STAGE}, {PROTO_STAGE, SASL_FAIL_STAGE})),
    (_postfix_sessions, ({"pf_after_auth", "pf_disconnect"},)),
    (_postfix_dovecot_sasl, ({"pf_sasl_fail"}, {"dv_auth"})),
    (_postfix_sends, ({"pf_qmgr"},)),
)
"""The steps in order, each with the stages it needs: at least one of each set in the batch."""
