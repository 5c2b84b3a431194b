"""Splitting each raw line into its envelope: timestamp (UTC, us), host, program, pid, message.

Recognised envelopes (one vectorised pass, the format chosen per row from its first bytes):

* RFC 3164 ``Nov 23 03:14:15 host prog[pid]: msg`` (an optional ``<PRI>`` in front, fractional
  seconds allowed). The year is ``year`` if given, else the most recent year that does not put
  the line more than a day after ``reference`` (the file's modification time).
* RFC 5424 ``<PRI>1 2026-11-23T03:14:15.123Z host app procid msgid [sd] msg``.
* ISO 8601 ``2026-11-23T03:14:15.123456+01:00 host prog[pid]: msg`` (rsyslog high precision,
  journald ``short-iso``; ``Z``, ``+01:00`` and ``+0100`` offsets).
* Dovecot's own ``log_path`` ``2026-11-23 03:14:15 imap-login: Info: Login: ...`` (no host).
* OpenWebMail ``Sat Nov 22 03:14:15 2026 - [pid] ...`` (no host, no program).
* Kerio Connect ``[17/Nov/2026 03:14:15] ...`` and SquirrelMail ``11/22/2026 03:14:15 ...``
  (month first), neither with host nor program.
* Roundcube's own log files ``[22-Nov-2026 03:14:15 +0100]: <session> ...`` (no host, no program).
* TAI64N ``@4000000069234f0f1a2b3c4d imap-login: Info: ...`` (daemontools/runit ``multilog`` and
  ``svlogd -t``; no host): the label's seconds minus 2^62 and the 10 s TAI-UTC offset that
  ``tai64nlocal`` assumes.

Stamps without an offset are read in ``timezone``. ``program`` is the tag as written without
``[pid]`` (``dovecot``, ``postfix/submission/smtpd``, ``auth-worker(12)`` in ``log_path`` files);
``message`` is the rest after ``: ``, with a leading ``Info: ``-style level removed. A line with
a time stamp but no ``[host ]tag: `` (Exim's main log, nginx, Zimbra, ...) keeps ``program`` and
``host`` null and the whole text after the stamp as ``message``; generic stamps
``YYYY-MM-DD HH:MM:SS[,.]fff``, ``YYYY/MM/DD ...`` and ``[...]``-bracketed ones are accepted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from detector.ingest.fields import byte_find, byte_head, byte_slice
from detector.schema import UTC_US, C

ENVELOPE_OK = "envelope_ok"
MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1
    )
}

_MONTH_TEXT = {m: f"{i:02d}" for m, i in MONTHS.items()}

_BSD = r"^(?:<\d{1,3}>)?([A-Z][a-z]{2})[ ]+(\d{1,2}) (\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) (.*)$"
_ISO = r"^(?:<\d{1,3}>)?(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?) (.*)$"
_DOVECOT = r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) (.*)$"
_GENERIC = r"^\[?(\d{4}[-/]\d{2}[-/]\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)(?:\][ ,]*|[ ,]+)(.*)$"
_RCUBE = r"^\[(\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2}(?: [+-]\d{4})?)\]:? (.*)$"
_DMY = r"^\[(\d{2}/[A-Z][a-z]{2}/\d{4}:? ?\d{2}:\d{2}:\d{2})\] (.*)$"
"""Kerio Connect (and common-log-format) ``[17/Nov/2026 03:14:15] ...``."""
_CTIME = r"^[A-Z][a-z]{2} ([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}:\d{2}:\d{2}) (\d{4}) - (.*)$"
"""OpenWebMail ``Sat Nov 22 03:14:15 2026 - [pid] ...`` (ctime with the year)."""
_US = r"^(\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}) (.*)$"
"""SquirrelMail's squirrel_logger ``11/22/2026 03:14:15 [LOGIN_ERROR] ...`` (month first)."""
_TAI = r"^@([0-9a-f]{16})([0-9a-f]{8}) (.*)$"
_TAI_BASE = 2**62 + 10
"""A TAI64N label's seconds are 2^62 + TAI seconds; TAI is UTC + 10 s in daemontools' convention."""
_5424 = r"^<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(.*)$"
# host (optional: absent in log_path files), tag, [pid], message
_TAG = r"^(?:([^\s:\[\]]+) )?([^\s\[\]:]+(?:\([^)\s]*\))?(?:<[^>\s]*>)*)(?:\[(\d+)\])?: ?(.*)$"
_LEVEL = r"^(?:Info|Warning|Error|Fatal|Panic|Debug|Notice): "


def _naive(expr: pl.Expr, fmt: str) -> pl.Expr:
    return expr.str.to_datetime(fmt, time_unit="us", strict=False)


def _localize(naive: pl.Expr, timezone: str) -> pl.Expr:
    if timezone == "UTC":
        return naive.dt.replace_time_zone("UTC")
    return naive.dt.replace_time_zone(
        timezone, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def _iso_stamp(text: pl.Expr, timezone: str) -> pl.Expr:
    """ISO 8601 text with or without offset -> UTC."""
    t = text.str.replace(",", ".", literal=True)
    has_offset = t.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$")
    with_offset = t.str.to_datetime("%+", time_unit="us", time_zone="UTC", strict=False)
    without = _localize(_naive(t.str.replace("T", " ", literal=True), "%Y-%m-%d %H:%M:%S%.f"), timezone)
    return pl.when(has_offset).then(with_offset).otherwise(without)


def _bsd_stamp(
    mon: pl.Expr,
    day: pl.Expr,
    clock: pl.Expr,
    year: pl.Expr | int | None,
    timezone: str,
    limit: datetime | None = None,
) -> pl.Expr:
    """RFC 3164 parts -> UTC. With ``limit`` (and no ``year``), the year is the latest that keeps the
    stamp at or before ``limit`` (compared as ``MM-DD HH:MM:SS`` text in ``timezone``)."""
    month = mon.replace_strict(_MONTH_TEXT, default=None, return_dtype=pl.String)
    md = pl.concat_str(
        [month, pl.lit("-"), day.str.replace(" ", "0", literal=True), pl.lit(" "), clock.str.head(8)]
    )
    if limit is not None:
        local = limit.astimezone(ZoneInfo(timezone))
        y = (
            pl.when(md <= local.strftime("%m-%d %H:%M:%S"))
            .then(pl.lit(str(local.year)))
            .otherwise(pl.lit(str(local.year - 1)))
        )
    else:
        y = year.cast(pl.String) if isinstance(year, pl.Expr) else pl.lit(str(year))
    frac = clock.str.slice(8)
    text = pl.concat_str([y, pl.lit("-"), md, frac])
    return _localize(_naive(text, "%Y-%m-%d %H:%M:%S%.f"), timezone)


def parse_envelope(
    lines: pl.LazyFrame,
    *,
    timezone: str = "UTC",
    year: int | None = None,
    reference: datetime | None = None,
    year_state: dict | None = None,
) -> pl.LazyFrame:
    """``lines`` (with ``raw``) -> + timestamp, host, program, pid, message, ``envelope_ok``.

    ``reference`` (UTC) is the file's modification time used to infer RFC 3164 years.
    ``year_state`` (a dict kept per file across its batches) carries the last month seen so that,
    with a fixed ``year``, a file that crosses New Year moves on to the next year.

    The common shapes are cut at fixed positions (fast); the rest goes through full regexes.
    Row order is not preserved.
    """
    raw = pl.col(C.RAW)
    fmt = (
        pl.when(raw.str.contains(BSD_SHAPE))
        .then(pl.lit(1, pl.Int8))
        .when(raw.str.contains(r"^\d{4}-\d\d-\d\dT[^ ,]* "))
        .then(pl.lit(2, pl.Int8))
        .when(raw.str.contains(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "))
        .then(pl.lit(3, pl.Int8))
        .otherwise(pl.lit(0, pl.Int8))
    )
    # the formats are materialised first, so that only the branches a batch needs are planned
    # (planning all four cost about 15 ms per batch, the general regexes most of it)
    df = lines.with_columns(_fmt=fmt).collect(engine="in-memory")
    present = set(df["_fmt"].unique().to_list())
    lf = df.lazy()
    branches = []
    if 1 in present:
        branches.append(_bsd_runs(lf.filter(pl.col("_fmt") == 1), year, reference, timezone, year_state))
    sp = byte_find(raw, " ")
    if 2 in present:
        branches.append(
            lf.filter(pl.col("_fmt") == 2).with_columns(
                _ts=_iso_stamp(byte_head(raw, sp), timezone), _rest=byte_slice(raw, sp + 1)
            )
        )
    if 3 in present:
        branches.append(
            lf.filter(pl.col("_fmt") == 3).with_columns(
                _ts=_localize(_naive(raw.str.head(19), "%Y-%m-%d %H:%M:%S"), timezone),
                _rest=raw.str.slice(20),
            )
        )
    if branches:
        branches = [_split_tag(pl.concat(branches, how="diagonal_relaxed"))]
    if 0 in present or not branches:
        branches.append(_slow(lf.filter(pl.col("_fmt") == 0), timezone, year, reference))
    both = pl.concat(branches, how="diagonal_relaxed")
    msg = pl.col("_msg")
    level = (
        pl.when(msg.str.starts_with("Info: "))
        .then(6)
        .when(msg.str.starts_with("Warning: ") | msg.str.starts_with("Debug: "))
        .then(pl.when(msg.str.starts_with("W")).then(9).otherwise(7))
        .when(
            msg.str.starts_with("Error: ") | msg.str.starts_with("Fatal: ") | msg.str.starts_with("Panic: ")
        )
        .then(7)
        .otherwise(0)
    )
    # ``sogod [26818]: ...`` (a space before the pid, no host): the word is the program
    spaced_pid = (pl.col("_prog") == "").fill_null(False)
    return (
        both.with_columns(
            pl.col("_ts").cast(UTC_US).alias(C.TIMESTAMP),
            pl.when(spaced_pid).then(None).otherwise(pl.col("_host")).alias(C.HOST),
            pl.when(spaced_pid).then(pl.col("_host")).otherwise(pl.col("_prog")).alias("program"),
            pl.col("_pid").cast(pl.Int64, strict=False).alias("pid"),
            msg.str.slice(level).alias("message"),
        )
        .with_columns(
            (pl.col(C.TIMESTAMP).is_not_null() & pl.col("message").is_not_null()).alias(ENVELOPE_OK)
        )
        .drop("_fmt", "_ts", "_host", "_prog", "_pid", "_msg")
    )


def _split_tag(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``_rest`` = ``[host ]tag[pid]: message`` -> ``_host``, ``_prog``, ``_pid``, ``_msg`` by position.

    The tag ends at the first ``": "`` (or a final ``:``); the host is what comes before the first
    space if that space is before the tag's end; a tag with a space is no tag (``_msg`` is then the
    whole text). Positions are materialised as columns first so that each search runs once per
    row; they count bytes (:func:`~detector.ingest.fields.byte_find`), and so do the cuts (also
    cheaper than ``str.slice``).
    """
    rest = pl.col("_rest")
    colon = byte_find(rest, ": ")
    lf = lf.with_columns(
        _sp=byte_find(rest, " "),
        _colon=pl.when(colon.is_null() & rest.str.ends_with(":"))
        .then(rest.str.len_bytes() - 1)
        .otherwise(colon),
    )
    sp, colon = pl.col("_sp"), pl.col("_colon")
    lf = lf.with_columns(_start=pl.when(sp < colon).then(sp + 1).otherwise(0))
    start = pl.col("_start")
    lf = lf.with_columns(_tagpid=byte_slice(rest, start, colon - start))
    tagpid = pl.col("_tagpid")
    lf = lf.with_columns(
        _ok=colon.is_not_null() & ~tagpid.str.contains(" ", literal=True) & (start < colon),
        _br=byte_find(tagpid, "["),
    )
    ok, br = pl.col("_ok"), pl.col("_br")
    return lf.with_columns(
        _host=pl.when(ok & (start > 0)).then(byte_head(rest, sp)),
        _prog=pl.when(ok).then(pl.when(br.is_null()).then(tagpid).otherwise(byte_head(tagpid, br))),
        _pid=pl.when(ok).then(byte_slice(tagpid, br + 1).str.strip_suffix("]")),
        _msg=pl.when(ok).then(byte_slice(rest, colon + 2)).otherwise(rest),
    ).drop("_sp", "_colon", "_start", "_tagpid", "_ok", "_br", "_rest")


def _slow(lf: pl.LazyFrame, timezone: str, year: int | None, reference: datetime | None) -> pl.LazyFrame:
    """The rows the fixed-position cut does not fit: full regexes (RFC 5424, <PRI>, fractions, ...)."""
    raw = pl.col(C.RAW)
    lf = lf.with_columns(_bsd=raw.str.extract_groups(_BSD)).with_columns(
        _mon=pl.col("_bsd").struct.field("1"),
        _day=pl.col("_bsd").struct.field("2"),
        _clock=pl.col("_bsd").struct.field("3"),
    )
    lf = _bsd_years(lf, year, reference, timezone, None)
    lf = lf.with_columns(
        _iso=raw.str.extract_groups(_ISO),
        _dov=raw.str.extract_groups(_DOVECOT),
        _r5=raw.str.extract_groups(_5424),
        _gen=raw.str.extract_groups(_GENERIC),
        _tai=raw.str.extract_groups(_TAI),
        _rc=raw.str.extract_groups(_RCUBE),
        _dmy=raw.str.extract_groups(_DMY),
        _us=raw.str.extract_groups(_US),
        _ct=raw.str.extract_groups(_CTIME),
    )
    is_bsd = pl.col("_bsd").struct.field("4").is_not_null()
    is_iso = pl.col("_iso").struct.field("1").is_not_null()
    is_dov = pl.col("_dov").struct.field("1").is_not_null()
    is_5424 = pl.col("_r5").struct.field("1").is_not_null()
    is_gen = pl.col("_gen").struct.field("1").is_not_null()
    is_tai = pl.col("_tai").struct.field("1").is_not_null()
    is_rc = pl.col("_rc").struct.field("1").is_not_null()
    dmy, us = pl.col("_dmy").struct, pl.col("_us").struct
    is_dmy, is_us = dmy.field("1").is_not_null(), us.field("1").is_not_null()
    ct = pl.col("_ct").struct
    is_ct = ct.field("1").is_not_null()
    ct_text = pl.concat_str(
        [ct.field("4"), ct.field("1"), ct.field("2").str.zfill(2), ct.field("3")], separator=" "
    )
    dmy_text = dmy.field("1").str.replace(r"^(\d{2}/[A-Z][a-z]{2}/\d{4}):? ?", "$1 ")
    rc_text = pl.col("_rc").struct.field("1")
    rc_stamp = (
        pl.when(rc_text.str.contains(r" [+-]\d{4}$"))
        .then(
            rc_text.str.to_datetime(
                "%d-%b-%Y %H:%M:%S %z", time_unit="us", strict=False
            ).dt.convert_time_zone("UTC")
        )
        .otherwise(_localize(_naive(rc_text, "%d-%b-%Y %H:%M:%S"), timezone))
    )
    tai = pl.col("_tai").struct
    tai_us = (tai.field("1").str.to_integer(base=16, strict=False) - _TAI_BASE) * 1_000_000 + tai.field(
        "2"
    ).str.to_integer(base=16, strict=False) // 1000
    gen_stamp = pl.col("_gen").struct.field("1").str.replace_all("/", "-", literal=True)
    lf = lf.with_columns(
        _ts=pl.when(is_bsd)
        .then(pl.col("_ts_bsd"))
        .when(is_5424)
        .then(_iso_stamp(pl.col("_r5").struct.field("1"), timezone))
        .when(is_iso)
        .then(_iso_stamp(pl.col("_iso").struct.field("1"), timezone))
        .when(is_dov)
        .then(_iso_stamp(pl.col("_dov").struct.field("1"), timezone))
        .when(is_gen)
        .then(_iso_stamp(gen_stamp, timezone))
        .when(is_tai)
        .then(pl.from_epoch(tai_us, time_unit="us").dt.replace_time_zone("UTC"))
        .when(is_rc)
        .then(rc_stamp)
        .when(is_dmy)
        .then(_localize(_naive(dmy_text, "%d/%b/%Y %H:%M:%S"), timezone))
        .when(is_us)
        .then(_localize(_naive(us.field("1"), "%m/%d/%Y %H:%M:%S"), timezone))
        .when(is_ct)
        .then(_localize(_naive(ct_text, "%Y %b %d %H:%M:%S"), timezone)),
        _rest=pl.when(is_bsd)
        .then(pl.col("_bsd").struct.field("4"))
        .when(is_iso & ~is_5424)
        .then(pl.col("_iso").struct.field("2"))
        .when(is_dov)
        .then(pl.col("_dov").struct.field("2"))
        .when(is_gen)
        .then(pl.col("_gen").struct.field("2"))
        .when(is_tai)
        .then(tai.field("3"))
        .when(is_rc)
        .then(pl.col("_rc").struct.field("2"))
        .when(is_dmy)
        .then(dmy.field("2"))
        .when(is_us)
        .then(us.field("2"))
        .when(is_ct)
        .then(ct.field("5")),
    )
    lf = lf.with_columns(_tag=pl.col("_rest").str.extract_groups(_TAG), _ts=pl.col("_ts").cast(UTC_US))
    tag = pl.col("_tag").struct
    r5 = pl.col("_r5").struct
    # Roundcube's own files have no tag: ``IMAP Error: Login failed ...`` is not ``host prog: msg``
    tagged = ~(is_rc | is_dmy | is_us | is_ct)
    lf = lf.with_columns(
        _host=pl.when(is_5424).then(r5.field("2")).when(tagged).then(tag.field("1")),
        _prog=pl.when(is_5424).then(r5.field("3")).when(tagged).then(tag.field("2")),
        _pid=pl.when(is_5424).then(r5.field("4")).when(tagged).then(tag.field("3")),
        _msg=pl.when(is_5424)
        .then(r5.field("5"))
        .when(tagged)
        .then(pl.coalesce(tag.field("4"), pl.col("_rest")))
        .otherwise(pl.col("_rest")),
    ).with_columns(_host=pl.when(pl.col("_host") != "-").then(pl.col("_host")))
    return lf.drop(
        "_bsd",
        "_mon",
        "_day",
        "_clock",
        "_rest",
        "_ts_bsd",
        "_iso",
        "_dov",
        "_r5",
        "_gen",
        "_tai",
        "_rc",
        "_dmy",
        "_us",
        "_ct",
        "_tag",
    )


def _bsd_runs(
    lf: pl.LazyFrame, year: int | None, reference: datetime | None, timezone: str, state: dict | None
) -> pl.LazyFrame:
    """Fast-path RFC 3164 rows -> ``_ts``, ``_rest``. A log has many lines per second: the stamp is
    parsed once per run of equal stamps and spread to the run's rows with one gather."""
    raw, stamp = pl.col(C.RAW), pl.col("_stamp")
    lf = lf.with_columns(_stamp=raw.str.head(15), _rest=raw.str.slice(16))
    lf = lf.with_columns(_new=(stamp != stamp.shift(1)).fill_null(True))
    first = stamp.filter(pl.col("_new"))
    mon, day, clock = first.str.slice(0, 3), first.str.slice(4, 2), first.str.slice(7, 8)
    ts = _bsd_years_expr(lf, mon, day, clock, year, reference, timezone, state)
    return lf.with_columns(_ts=ts.gather(pl.col("_new").cum_sum() - 1)).drop("_stamp", "_new")


def _bsd_years(
    lf: pl.LazyFrame, year: int | None, reference: datetime | None, timezone: str, state: dict | None
) -> pl.LazyFrame:
    """Add ``_ts_bsd``: RFC 3164 stamps (``_mon``, ``_day``, ``_clock``) with their inferred (or given) year."""
    mon, day, clock = pl.col("_mon"), pl.col("_day"), pl.col("_clock")
    return lf.with_columns(_ts_bsd=_bsd_years_expr(lf, mon, day, clock, year, reference, timezone, state))


BSD_SHAPE = r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d "
"""An RFC 3164 stamp at the start of a line (the envelope's fast format 1)."""


def _month(mon: pl.Expr) -> pl.Expr:
    return mon.replace_strict(MONTHS, default=None, return_dtype=pl.Int32)


def _wraps(month: pl.Expr, prev_month: int | None) -> pl.Expr:
    """1 where a month drops by more than six from the previous stamp's (a New Year crossing)."""
    prev = month.forward_fill().shift(1)
    if prev_month is not None:
        prev = prev.fill_null(prev_month)
    return (prev - month > 6).fill_null(False).cast(pl.Int32)


def advance_year(raw: pl.Series, state: dict) -> tuple[dict, bool]:
    """With a fixed ``year``: the ``year_state`` a batch of lines ``raw`` starts from (a copy), and
    whether the batch is *steady* (no crossing before it and its months never decrease, so every
    RFC 3164 stamp of it, and of any subset of its lines, is in the fixed year itself). ``state``
    is moved past the batch, exactly as :func:`parse_envelope` moves it.

    Read before the batch is parsed, so that batches can be parsed in any order or at once: the
    state is all one batch hands on to the next."""
    before = dict(state)
    line = pl.col(C.RAW)
    months = (
        pl.DataFrame({C.RAW: raw})
        .select(pl.when(line.str.contains(BSD_SHAPE)).then(_month(line.str.head(3))).alias("m"))
        .drop_nulls()
    )
    if months.is_empty():
        return before, not before.get("crossed", 0)
    prev = before.get("month")
    m = pl.col("m")
    wraps, last, rises = months.select(
        _wraps(m, prev).sum().alias("wraps"),
        m.last().alias("last"),
        ((m.diff().fill_null(0) >= 0).all() & (m.first() >= (prev or 0))).alias("rises"),
    ).row(0)
    state["month"] = last
    state["crossed"] = before.get("crossed", 0) + int(wraps)
    return before, not before.get("crossed", 0) and bool(rises)


def _bsd_years_expr(
    lf: pl.LazyFrame,
    mon: pl.Expr,
    day: pl.Expr,
    clock: pl.Expr,
    year: int | None,
    reference: datetime | None,
    timezone: str,
    state: dict | None,
) -> pl.Expr:
    """RFC 3164 parts -> UTC stamps. With a fixed ``year``, a drop of more than six months from one
    stamp to the next is a New Year crossing; ``state`` carries the last month and the crossings
    seen to the next batch (read from ``lf``)."""
    if year is not None:
        month = _month(mon)
        wrap = _wraps(month, (state or {}).get("month"))
        start = (state or {}).get("crossed", 0)
        years = pl.lit(year + start, dtype=pl.Int32) + wrap.cum_sum()
        if state is not None:
            tail = lf.select(month.drop_nulls().last().alias("m"), wrap.sum().alias("w")).collect().row(0)
            if tail[0] is not None:
                state["month"] = tail[0]
            state["crossed"] = start + int(tail[1] or 0)
        return _bsd_stamp(mon, day, clock, years, timezone)
    ref = reference or datetime.now().astimezone()
    return _bsd_stamp(mon, day, clock, None, timezone, limit=ref + timedelta(days=1))
