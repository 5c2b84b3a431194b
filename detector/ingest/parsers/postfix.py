"""Postfix (any instance or service name: ``postfix/submission/smtpd``, ``postfix-in/smtpd``, ...).

Line kinds:

* smtpd ``QID: client=host[ip], sasl_method=M, sasl_username=u``: login success (and the queue
  id that ``correlate`` joins to qmgr's ``from=`` line for a ``send`` event).
* smtpd ``warning: host[ip](:port)?: SASL M authentication failed: reason(, sasl_username=u)?``:
  failure (account filled by ``correlate`` from Dovecot's auth line where Postfix omits it).
* smtpd ``warning: host[ip]: SASL M authentication aborted`` (the client sent ``*``): an attempt
  of unknown outcome that stands in for its session's AUTH counter, like a failure warning;
  Cyrus SASL's own ``warning: SASL authentication failure|problem: ...`` lines name no client (the
  smtpd warning with the client follows): noise ``noise:cyrus_sasl``. A failure whose reason is
  Postfix's ``Connection lost to authentication server`` is ``tempfail`` (the password was not
  checked). See :func:`_sasl_variants`.
* smtpd ``lost connection|timeout|too many errors after AUTH from host[ip]``: an attempt of
  unknown outcome; ``disconnect from host[ip] ... auth=S/A ...`` with S < A: A-S failed
  attempts. Both count only where no SASL warning of the same smtpd session exists.
* qmgr ``QID: from=<a>, size=N, nrcpt=N``: joined to the authenticated ``client=`` line.

Everything else of Postfix is noise by kind (connect, disconnect, NOQUEUE reject, cleanup,
delivery agents, ...). anvil's ``statistics: max ... for (service:addr)`` peaks are
``noise:postfix_anvil`` and postscreen's verdicts ``noise:postscreen_<verdict>`` by the daemon's
first words (:data:`_POSTSCREEN`): neither is a login attempt, and the client's own AUTH attempts
are counted from smtpd's lines (docs/parsers.md, "Postfix anvil and postscreen").
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import (
    after,
    before,
    between,
    byte_find,
    byte_head,
    byte_slice,
    canonical_ip,
    finish,
    to_int,
)
from detector.ingest.registry import KIND, LineParser, register
from detector.schema import Action, C, Outcome, Service

STAGE = "_stage"
QID = "_qid"
SESSION = "_smtpd"
"""Private columns read by ``correlate``: stage, queue id, and smtpd process (program + pid)."""
KEEP = (STAGE, QID, SESSION)


def claims() -> pl.Expr:
    return pl.col("program").str.starts_with("postfix")


def _service(program: pl.Expr) -> pl.Expr:
    middle = program.str.count_matches("/", literal=True) >= 2
    sub = program.str.contains("submission", literal=True) | program.str.contains("smtps", literal=True)
    return pl.when(middle & sub).then(pl.lit(Service.SUBMISSION)).otherwise(pl.lit(Service.SMTP))


def _addr(hostpart: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``host[ip]`` or ``host[ip]:port`` -> (canonical ip, port)."""
    ip = between(hostpart, "[", "]")
    port = to_int(after(hostpart, "]:"), pl.Int32)
    return canonical_ip(ip), port


_AGENTS = (
    "qmgr",
    "cleanup",
    "smtp",
    "lmtp",
    "local",
    "virtual",
    "pipe",
    "postscreen",
    "dnsblog",
    "anvil",
    "pickup",
    "bounce",
    "master",
    "tlsproxy",
    "scache",
    "error",
    "discard",
    "verify",
    "trivial-rewrite",
)


def _process() -> pl.Expr:
    """``program[pid]``: one smtpd process, whose sessions ``correlate`` separates."""
    return pl.concat_str([pl.col("program"), pl.lit("["), pl.col("pid").cast(pl.String), pl.lit("]")])


_SASL_FAIL = r"^warning: [^\[\]\s]*\[[0-9A-Fa-f:.]+\](?::\d+)?: SASL \S+ authentication failed"
"""smtpd's SASL failure: ``warning: <verified name or unknown>[<address>](:<port>): SASL <mech>
authentication failed``, the daemon's own words from the start of the line (the name is a
verified host name, which holds no brackets or spaces)."""
_AFTER_AUTH = (
    r"^(?:lost connection|timeout|too many errors|improper command pipelining) after AUTH from [^\[\]\s]*\["
)
_CLIENT = r"^[0-9A-Za-z]+: client=[^\[\]\s]*\["
_QMGR_TAIL = r", size=(\d+), nrcpt=(\d+) \(queue [a-z]+\)$"
"""qmgr's ``QID: from=<sender>, size=N, nrcpt=N (queue active)``: the sender is written verbatim
(``from=<"size=1,nrcpt=1,"@x>``), so size and recipients are read from the end of the line."""
_AGENT_NOISE = {agent: f"noise:postfix_{agent}" for agent in _AGENTS}
_MARKERS = r": client=|authentication fail|after AUTH from |auth=0|: from=<|SASL"
"""One regex alternation (a single SIMD literal search): a line without any of these can only be
noise of a kind decided by its program and first words (see :func:`_kind`)."""


_POSTSCREEN = {
    "CONNECT from [": "connect",
    "PASS NEW [": "pass",
    "PASS OLD [": "pass",
    "DNSBL rank ": "dnsbl",
    "PREGREET ": "pregreet",
    "HANGUP after ": "hangup",
    "DISCONNECT [": "disconnect",
    "NOQUEUE: reject: ": "reject",
    "reject: connect from [": "reject",
    "COMMAND ": "protocol",
    "NON-SMTP COMMAND from [": "protocol",
    "BARE NEWLINE from [": "protocol",
    "DATA without valid RCPT from [": "protocol",
    "BDAT without valid RCPT from [": "protocol",
    "DENYLISTED [": "access",
    "BLACKLISTED [": "access",
    "ALLOWLISTED [": "access",
    "WHITELISTED [": "access",
    "ALLOWLIST VETO [": "access",
    "WHITELIST VETO [": "access",
}
"""postscreen's own first words (``src/postscreen/postscreen*.c``) -> its verdict; what follows
them (the client's pre-greeting text, HELO name, commands, envelope addresses) is the client's and
never read."""
_POSTSCREEN_RE = "^(" + "|".join(w.replace("[", r"\[") for w in _POSTSCREEN) + ")"


def _postscreen_kind(msg: pl.Expr) -> pl.Expr:
    """``noise:postscreen_<verdict>`` from the daemon's first words, else ``noise:postfix_postscreen``."""
    verdict = msg.str.extract(_POSTSCREEN_RE, 1).replace_strict(_POSTSCREEN, default=None)
    return (pl.lit("noise:postscreen_") + verdict).fill_null("noise:postfix_postscreen")


def _noise_of(prog: pl.Expr) -> pl.Expr:
    """``noise:postfix_<agent>`` for the usual agents (the last ``/`` segment of the program), else
    ``noise:postfix_other``."""
    agent = prog.str.split("/").list.last()  # a program without "/" is "postfix...", no agent
    return agent.replace_strict(_AGENT_NOISE, default="noise:postfix_other").fill_null("noise:postfix_other")


def _kind(prog: pl.Expr, msg: pl.Expr, *, smtpd: bool, marked: bool) -> pl.Expr:
    """The kind of a line (the first test that holds wins), written out for smtpd or other
    programs and for lines with or without one of :data:`_MARKERS`: a test that cannot hold is
    left out, as polars evaluates every test of a when/then chain on every row."""
    cases: list[tuple[pl.Expr, pl.Expr]] = []
    if smtpd and marked:
        client = (
            pl.when(msg.str.contains(", sasl_username=", literal=True))
            .then(pl.lit("client"))
            .otherwise(pl.lit("noise:client"))
        )
        cases += [
            (msg.str.contains(_CLIENT), client),
            (msg.str.contains(_SASL_FAIL), pl.lit("sasl_fail")),
            *_sasl_variants(msg),
            (msg.str.contains(_AFTER_AUTH), pl.lit("after_auth")),
            (
                msg.str.starts_with("disconnect from ") & msg.str.contains(" auth=0", literal=True),
                pl.lit("disconnect_auth"),
            ),
        ]
    if marked and not smtpd:
        cases.append(
            (msg.str.contains(r"^[0-9A-Za-z]+: from=<") & prog.str.ends_with("/qmgr"), pl.lit("qmgr"))
        )
    if smtpd:
        cases += [
            (msg.str.starts_with("connect from "), pl.lit("noise:connect")),
            (msg.str.starts_with("disconnect from "), pl.lit("noise:disconnect")),
        ]
    if marked:
        cases.append(
            (
                msg.str.contains("SASL authentication failed; server ", literal=True),
                pl.lit("noise:smtp_client_auth"),
            )
        )
    cases.append((msg.str.starts_with("NOQUEUE: "), pl.lit("noise:noqueue")))
    if smtpd and marked:
        cases.append(
            (
                msg.str.contains("SASL", literal=True)
                & msg.str.contains("authentication fail", literal=True),
                pl.lit("unparsed"),
            )
        )
    out = pl.lit("noise:smtpd_other") if smtpd else _noise_of(prog)
    for cond, value in reversed(cases):
        out = pl.when(cond).then(value).otherwise(out)
    return out


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    prog, msg = pl.col("program"), pl.col("message")
    # most lines are delivery noise: one marker search splits them off, and each of the four
    # sub-frames (smtpd or not, marker or not) runs only the tests that can hold on it;
    # postscreen's lines are a fifth, decided by its first words alone (no other test applies)
    lf = lf.with_columns(
        _is_smtpd=prog.str.ends_with("/smtpd"),
        _marked=msg.str.contains(_MARKERS),
        _psc=prog.str.ends_with("/postscreen"),
    )
    smtpd, marked, psc = pl.col("_is_smtpd"), pl.col("_marked"), pl.col("_psc")
    lf = pl.concat(
        [
            lf.filter(psc).with_columns(_line=_postscreen_kind(msg)),
            *(
                lf.filter(s & m & ~psc).with_columns(_line=_kind(prog, msg, smtpd=sv, marked=mv))
                for s, sv in ((smtpd, True), (~smtpd, False))
                for m, mv in ((marked, True), (~marked, False))
            ),
        ],
        how="vertical",
    )
    # materialised once: otherwise the optimiser pushes each kind's filter into the union above
    # and recomputes the classification once per kind
    df = lf.collect(engine="in-memory")
    lf, names = df.lazy(), tuple(df.columns)
    kind = pl.col("_line")
    special = ["client", "sasl_fail", "sasl_abort", "after_auth", "disconnect_auth", "qmgr"]
    rest = lf.filter(~kind.is_in(special)).with_columns(
        pl.col("_line").alias(KIND),
        pl.lit("postfix").alias(C.DAEMON),
        pl.when(kind == "noise:disconnect").then(pl.lit("pf_boundary")).alias(STAGE),
        pl.when(kind == "noise:disconnect").then(_process()).alias(SESSION),
    )
    common = [pl.lit("postfix").alias(C.DAEMON), _service(prog).alias(C.SERVICE), _process().alias(SESSION)]
    return pl.concat(
        [
            finish(_client(lf.filter(kind == "client")).with_columns(common), KEEP, ("pf_client", names)),
            finish(_sasl_fail(lf.filter(kind == "sasl_fail")).with_columns(common), KEEP, ("pf_sasl", names)),
            finish(
                _sasl_abort(lf.filter(kind == "sasl_abort")).with_columns(common), KEEP, ("pf_abort", names)
            ),
            finish(
                _after_auth(lf.filter(kind == "after_auth")).with_columns(common), KEEP, ("pf_after", names)
            ),
            finish(
                _disconnect(lf.filter(kind == "disconnect_auth")).with_columns(common),
                KEEP,
                ("pf_disc", names),
            ),
            finish(
                _qmgr(lf.filter(kind == "qmgr")).with_columns(pl.lit("postfix").alias(C.DAEMON)),
                KEEP,
                ("pf_qmgr", names),
            ),
            finish(rest, KEEP, ("pf_rest", names)),
        ],
        how="vertical",
    )


def _client(lf: pl.LazyFrame) -> pl.LazyFrame:
    msg = pl.col("message")
    ip, port = _addr(between(msg, "client=", ","))
    # the name runs to the daemon's next field (or the end), not to the first comma
    user = msg.str.extract(
        r"(?s), sasl_username=(.*?)(?:, (?:sasl_sender|orig_queue_id|orig_client)=.*)?$", 1
    )
    return lf.with_columns(
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.SUCCESS).alias(C.OUTCOME),
        user.str.to_lowercase().alias(C.ACCOUNT),
        ip.alias(C.SOURCE_IP),
        port.alias(C.SOURCE_PORT),
        between(msg, "sasl_method=", ",").str.to_uppercase().alias(C.AUTH_METHOD),
        before(msg, ": ").alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.when(ip.is_null()).then(pl.lit("unparsed")).otherwise(pl.lit("event")).alias(KIND),
        pl.lit("pf_client").alias(STAGE),
        before(msg, ": ").alias(QID),
    )


def _sasl_fail(lf: pl.LazyFrame) -> pl.LazyFrame:
    msg = pl.col("message")
    body = msg.str.slice(len("warning: "))
    sasl = byte_find(body, ": SASL ")
    hostpart = byte_head(body, sasl)
    ip, port = _addr(hostpart)
    tail = byte_slice(body, sasl + len(": SASL "))
    method = before(tail, " ")
    reason = after(tail, "authentication failed: ")
    user = after(reason, ", sasl_username=")
    reason = before(reason, ", sasl_username=")
    reason = (
        pl.when(reason.is_in(["UGFzc3dvcmQ6", "VXNlcm5hbWU6", ""]))
        .then(pl.lit("authentication failure"))
        .otherwise(reason)
    )
    return lf.with_columns(
        pl.lit(Action.LOGIN).alias(C.ACTION),
        _sasl_outcome(reason).alias(C.OUTCOME),
        user.str.to_lowercase().alias(C.ACCOUNT),
        ip.alias(C.SOURCE_IP),
        port.alias(C.SOURCE_PORT),
        method.str.to_uppercase().alias(C.AUTH_METHOD),
        pl.lit(1).alias(C.ATTEMPTS),
        reason.alias(C.REASON),
        pl.when(ip.is_null()).then(pl.lit("unparsed")).otherwise(pl.lit("event")).alias(KIND),
        pl.lit("pf_sasl_fail").alias(STAGE),
    )


# --- SASL variants (issue 13): aborted exchanges, Cyrus SASL's own lines, the auth server gone ---

_SASL_TEMPFAIL = ("Connection lost to authentication server",)
"""Reasons Postfix's Dovecot SASL client gives when the auth server could not check the password."""


def _sasl_variants(msg: pl.Expr) -> list[tuple[pl.Expr, pl.Expr]]:
    """Line kinds of smtpd SASL lines beside the failure warning (tried before the generic ones)."""
    warning = msg.str.starts_with("warning: ")
    return [
        (
            warning
            & msg.str.contains(": SASL ", literal=True)
            & msg.str.ends_with(" authentication aborted"),
            pl.lit("sasl_abort"),
        ),
        (
            msg.str.starts_with("warning: SASL authentication failure: ")
            | msg.str.starts_with("warning: SASL authentication problem: "),
            pl.lit("noise:cyrus_sasl"),
        ),
    ]


def _sasl_outcome(reason: pl.Expr) -> pl.Expr:
    """``tempfail`` for the reasons of :data:`_SASL_TEMPFAIL`, else ``failure``."""
    return (
        pl.when(reason.is_in(_SASL_TEMPFAIL))
        .then(pl.lit(Outcome.TEMPFAIL))
        .otherwise(pl.lit(Outcome.FAILURE))
    )


def _sasl_abort(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``warning: host[ip](:port)?: SASL M authentication aborted``: the client gave up (``*``).

    The address is read between the first ``[`` and ``]`` of the daemon-written ``host[ip]`` before
    the first ``: SASL `` (a validated host name holds neither); the method is the client's word."""
    msg = pl.col("message")
    body = msg.str.slice(len("warning: "))
    sasl = byte_find(body, ": SASL ")
    ip, port = _addr(byte_head(body, sasl))
    method = before(byte_slice(body, sasl + len(": SASL ")), " ")
    return lf.with_columns(
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.UNKNOWN).alias(C.OUTCOME),
        ip.alias(C.SOURCE_IP),
        port.alias(C.SOURCE_PORT),
        method.str.to_uppercase().alias(C.AUTH_METHOD),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.lit("authentication aborted").alias(C.REASON),
        pl.when(ip.is_null()).then(pl.lit("unparsed")).otherwise(pl.lit("event")).alias(KIND),
        pl.lit("pf_sasl_fail").alias(STAGE),
    )


def _after_auth(lf: pl.LazyFrame) -> pl.LazyFrame:
    msg = pl.col("message")
    ip, port = _addr(after(msg, " after AUTH from "))
    return lf.with_columns(
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.UNKNOWN).alias(C.OUTCOME),
        ip.alias(C.SOURCE_IP),
        port.alias(C.SOURCE_PORT),
        pl.lit(1).alias(C.ATTEMPTS),
        before(msg, " from ").alias(C.REASON),
        pl.when(ip.is_null()).then(pl.lit("unparsed")).otherwise(pl.lit("event")).alias(KIND),
        pl.lit("pf_after_auth").alias(STAGE),
    )


def _disconnect(lf: pl.LazyFrame) -> pl.LazyFrame:
    msg = pl.col("message")
    ip, port = _addr(between(msg, "disconnect from ", " "))
    auth = between(msg, " auth=", " ")
    ok = to_int(before(auth, "/"), pl.Int32)
    tried = to_int(after(auth, "/"), pl.Int32)
    failed = tried - ok
    return lf.with_columns(
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.FAILURE).alias(C.OUTCOME),
        ip.alias(C.SOURCE_IP),
        port.alias(C.SOURCE_PORT),
        failed.alias(C.ATTEMPTS),
        pl.lit("auth command failed").alias(C.REASON),
        pl.when(failed.fill_null(0) <= 0)
        .then(pl.lit("noise:disconnect"))
        .when(ip.is_null())
        .then(pl.lit("unparsed"))
        .otherwise(pl.lit("event"))
        .alias(KIND),
        pl.lit("pf_disconnect").alias(STAGE),
    )


def _qmgr(lf: pl.LazyFrame) -> pl.LazyFrame:
    msg = pl.col("message")
    tail = msg.str.extract_groups(_QMGR_TAIL)
    return lf.with_columns(
        pl.lit(Action.SEND).alias(C.ACTION),
        tail.struct.field("2").cast(pl.Int32, strict=False).alias(C.RECIPIENTS),
        tail.struct.field("1").cast(pl.Int64, strict=False).alias(C.MESSAGE_SIZE),
        before(msg, ": ").alias(C.SESSION_ID),
        pl.lit("noise:qmgr").alias(KIND),
        pl.lit("pf_qmgr").alias(STAGE),
        before(msg, ": ").alias(QID),
    )


PARSER = register(
    LineParser(
        name="postfix",
        claims=claims,
        parse=parse,
        doc="Postfix smtpd SASL logins and failures, AUTH disconnect counters, qmgr sends joined to the login.",
    )
)
