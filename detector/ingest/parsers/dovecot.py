"""Dovecot 2.2/2.3/2.4 via syslog (``dovecot: imap-login: ...``) and its own ``log_path`` files.

Line kinds (``proc`` is the Dovecot process prefix, e.g. ``imap-login``, ``auth-worker(12)``):

* ``*-login: Login: user=<u>, method=M, rip=A, lip=B, mpid=N, TLS, session=<S>``: login success.
* ``*-login: Disconnected|Aborted login|Connection closed|Login aborted ... (auth failed, N attempts
  [in S secs]): user=<u>, method=M, rip=A, ...``: failure standing for N attempts.
* ``*-login: ... (tried to use disallowed|disabled plaintext auth)``: policy refusal.
* ``auth:``/``auth-worker(N):`` ``<passdb>(user,ip[,<session>]): <reason>``: failure, unknown user,
  disabled account, policy refusal or temporary failure, with the ``(given password: ...)`` /
  ``(SHA1 of given password: ...)`` value kept in ``password_hash`` (a clear-text password is
  replaced by a digest, never stored).
* ``imap(user)<pid><session>: Disconnected: Logged out in=N out=M`` and POP3
  ``top=.., retr=N/SIZE, del=.., size=S``: logout with traffic.
* ``pam_unix(dovecot:auth): authentication failure; ... ruser=u rhost=A``: failure.

Everything else of Dovecot is noise by kind; an auth-looking line that cannot be read is
``unparsed``. The two-line failure (auth line + login line) is merged by ``correlate``.
"""

from __future__ import annotations

import re

import polars as pl

from detector.ingest.fields import (
    after,
    angle,
    before,
    between,
    byte_find,
    byte_head,
    byte_slice,
    canonical_ip,
    finish,
    repeated,
    to_int,
)
from detector.ingest.registry import KIND, LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service

STAGE = "_stage"
"""Private column read by ``correlate``: ``dv_auth`` / ``dv_login_fail`` rows take part in merging."""

_PROCS = ("auth", "imap", "pop3", "lmtp", "managesieve", "submission", "master", "doveadm", "indexer", "lda")
_LEVELS = ("Info: ", "Warning: ", "Error: ", "Fatal: ", "Panic: ", "Debug: ")
_PASSDB = r"(?s)(?:^|: )([A-Za-z][\w-]*)\((.*?),([0-9A-Fa-f:.%\[\]]+)(?:,master)?(?:,<([^<>]*)>|,)?\): (.*)$"
"""Any passdb line with an address. The address is not empty (Dovecot never writes an empty one) and
the session holds no ``<``: a name such as ``u,,<z`` cannot end the user early and turn the remote
attempt into a local one (the user is the shortest text before the one identifier tail)."""
_PASSDB_HEAD = r"^([A-Za-z][\w-]*)\(([^(),]*),([0-9A-Fa-f:.%\[\]]+)(?:,<([^<>(),]*)>|,)?\): "
"""The common passdb head at the start of the body. Where it matches, :data:`_PASSDB` finds the
same groups (user without comma, session without ``)``: the first ``"): "`` ends the head)."""
_PASSDB_LOCAL = r"(?s)(?:^|: )([A-Za-z][\w-]*)\((.*?)(?:,master)?(?:,<([^>]*)>)?\): (.*)$"
"""A passdb line without an address (a local client): ``passwd-file(user): ...``, ``pam(user,<S>): ...``."""
_IDENTIFIER_TAIL = r",(?:[0-9A-Fa-f:.]+(?:,master)?(?:,<[^<>]*>|,)?|master(?:,<[^<>]*>)?|<[^<>]*>|)\): "
"""The end of a passdb line's identifier that Dovecot writes after the user name (``auth-request.c``:
``,<remote ip>[,master][,<session>]): ``). The user name is written verbatim (control characters
replaced), so a line holding two of these is ``ambiguous_field`` (``,): `` counts: Dovecot never
writes an empty address, a name ending so would turn a remote attempt into a local one)."""
_LOGIN_FIELDS = (
    r"^user=<([^>=,]*)>, method=([^,=]*), rip=([^,=]*), lip=([^,=]*)(?:, mpid=\d+)?(, TLS|, secured)?, "
    r"session=<([^>,=]*)>$"
)
"""The usual login fields, in Dovecot's order. No value holds ``,`` or ``=``, so where this matches
(one regex test, no capture: captures cost 1.5 us here) the fields are the parts between
``", "`` and the general search (:func:`_login_fields`) would find the same values."""
_MAIL_PROCS = ("imap(", "pop3(", "submission(", "managesieve(")
_SERVICES = {
    "imap-login": Service.IMAP,
    "pop3-login": Service.POP3,
    "submission-login": Service.SUBMISSION,
    "managesieve-login": Service.MANAGESIEVE,
    "imap": Service.IMAP,
    "pop3": Service.POP3,
    "submission": Service.SUBMISSION,
    "managesieve": Service.MANAGESIEVE,
}


def _starts_any(prefixes: tuple[str, ...]) -> str:
    """Regex for "starts with one of ``prefixes``": one anchored search instead of one test each."""
    return "^(?:" + "|".join(re.escape(p) for p in prefixes) + ")"


def claims() -> pl.Expr:
    prog = pl.col("program")
    return (
        prog.str.starts_with("dovecot")
        | prog.str.ends_with("-login")
        | prog.str.starts_with("auth-worker")
        | (pl.col(C.HOST).is_null() & prog.str.contains(_starts_any(_PROCS)))
        | pl.col("message").str.starts_with("pam_unix(dovecot").fill_null(False)
    )


def _text() -> pl.Expr:
    """The Dovecot text ``proc: body`` whichever envelope carried it."""
    prog, msg = pl.col("program"), pl.col("message")
    return (
        pl.when(prog.str.starts_with("dovecot")).then(msg).otherwise(pl.concat_str([prog, pl.lit(": "), msg]))
    )


def _strip_level(body: pl.Expr) -> pl.Expr:
    """Remove a leading ``Info: ``-style level with one slice."""
    n = pl.lit(0)
    for lvl in reversed(_LEVELS):
        n = pl.when(body.str.starts_with(lvl)).then(pl.lit(len(lvl))).otherwise(n)
    return body.str.slice(n)


def _given_password(text: pl.Expr) -> pl.Expr:
    """``{SCHEME}hash`` or ``SHA1 of given password: x`` kept; clear text replaced by a digest."""
    sha = between(text, "of given password: ", ")")
    given = between(text, "(given password: ", ")")
    looks_hashed = given.str.starts_with("{")
    digest = pl.concat_str([pl.lit("digest:"), given.hash(seed=7).cast(pl.String)])
    return (
        pl.when(sha.is_not_null())
        .then(pl.concat_str([pl.lit("{SHA1}"), sha]))
        .when(given.is_not_null())
        .then(pl.when(looks_hashed).then(given.str.head(24)).otherwise(digest))
    )


def _any_of(text: pl.Expr, words: list[str]) -> pl.Expr:
    """``text`` contains one of ``words`` (literal): one regex alternation, a single SIMD search
    (``str.contains_any`` measured 7x slower here)."""
    return text.str.contains("|".join(re.escape(w) for w in words))


def _outcome_of_reason(reason: pl.Expr) -> pl.Expr:
    r = reason.str.to_lowercase()
    return (
        pl.when(_any_of(r, ["unknown user", "user not known", "no such user"]))
        .then(pl.lit(Outcome.UNKNOWN_USER))
        .when(r.str.contains("policy", literal=True))
        .then(pl.lit(Outcome.POLICY))
        .when(_any_of(r, ["expired", "disabled", "locked", "pam_acct_mgmt", "nologin", "not allowed"]))
        .then(pl.lit(Outcome.DISABLED))
        .when(
            _any_of(
                r, ["mismatch", "authentication failure", "invalid credentials", "password", "auth failed"]
            )
        )
        .then(pl.lit(Outcome.FAILURE))
        .when(_any_of(r, ["failed", "error", "timeout", "timed out", "temporary", "lookup"]))
        .then(pl.lit(Outcome.TEMPFAIL))
    )


def _looks_failed(body: pl.Expr) -> pl.Expr:
    return _any_of(
        body.str.to_lowercase(), ["mismatch", "unknown user", "authentication fail", "auth failed"]
    )


def _service(proc: pl.Expr) -> pl.Expr:
    name = proc.str.replace(r"[(<].*$", "")
    return name.replace_strict(_SERVICES, default=None, return_dtype=pl.String)


def _proc_class() -> pl.Expr:
    """0 other, 1 ``*-login``, 2 ``auth*``, 3 a mail process (``imap(``, ``pop3(``, ...)."""
    proc = pl.col("_proc")
    return (
        pl.when(pl.col("_body").str.starts_with("pam_unix(").fill_null(False))
        .then(pl.lit(0, pl.Int8))
        .when(proc.str.ends_with("-login"))
        .then(pl.lit(1, pl.Int8))
        .when(proc.str.starts_with("auth"))
        .then(pl.lit(2, pl.Int8))
        .when(proc.str.contains(_starts_any(_MAIL_PROCS)).fill_null(False))
        .then(pl.lit(3, pl.Int8))
        .otherwise(pl.lit(0, pl.Int8))
    )


def _head(body: pl.Expr) -> pl.Expr:
    """The daemon's own words of a login-process line: the text before the first ``: user=<``
    (the user name, written verbatim, comes after it and cannot reach this part)."""
    return before(body, ": user=<")


PROXY_DEST = "(proxy dest auth failed)"
PROXY_REASON = "proxy dest auth failed"
"""The reason of both proxy failure lines: each ``Login failed to`` line is one attempt, and the
session's ``Disconnected (proxy dest auth failed)`` line counts only where it has none
(``correlate``)."""


def _login_kind(body: pl.Expr) -> pl.Expr:
    head = _head(body)
    return (
        pl.when(body.str.starts_with("Login: "))
        .then(pl.lit("login_ok"))
        # ``proxy(<user>): Login failed to <host>:<port>[/<user>][ (master <m>)]: <reply>: <fields>``
        # (login-common's client_proxy_log_failure): the destination refused the password
        .when(body.str.starts_with("proxy(") & body.str.contains("): Login failed to ", literal=True))
        .then(pl.lit("login_proxy"))
        .when(head.str.contains("(auth failed", literal=True) | head.str.contains(PROXY_DEST, literal=True))
        .then(pl.lit("login_fail"))
        .when(head.str.contains("plaintext auth)", literal=True))
        .then(pl.lit("login_policy"))
        .otherwise(pl.lit("noise:dovecot_login"))
    )


def _other_kind() -> pl.Expr:
    """``pam_unix(dovecot:auth): authentication failure`` (whichever envelope carried it), else noise."""
    prog, msg = pl.col("program"), pl.col("message")
    head = pl.when(pl.col("_sys")).then(msg).otherwise(prog)
    starts = head.str.starts_with("pam_unix(") | pl.col("_body").str.starts_with("pam_unix(")
    pam = starts & msg.str.contains("authentication failure", literal=True)
    return pl.when(pam).then(pl.lit("pam")).otherwise(pl.lit("noise:dovecot_other"))


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    prog, msg = pl.col("program"), pl.col("message")
    # some set-ups log ``dovecot[pid]: dovecot: auth: ...``: the second tag is dropped
    lf = lf.with_columns(
        pl.when(prog.str.starts_with("dovecot") & msg.str.starts_with("dovecot: "))
        .then(msg.str.slice(len("dovecot: ")))
        .otherwise(msg)
        .alias("message")
    )
    # the Dovecot text is ``proc: body``: in syslog the message, in log_path files program + message
    colon = byte_find(msg, ": ")
    # Dovecot 2.1/2.2 logged its auth process as the program ``dovecot-auth``: ``proc`` is ``auth``
    auth2 = prog.str.starts_with("dovecot-auth")
    lf = lf.with_columns(_sys=prog.str.starts_with("dovecot") & ~auth2, _auth2=auth2, _colon=colon)
    sys = pl.col("_sys")
    lf = lf.with_columns(
        _proc=pl.when(sys)
        .then(byte_head(msg, pl.col("_colon")))
        .when(pl.col("_auth2"))
        .then(pl.lit("auth"))
        .otherwise(prog),
        _body=pl.when(sys).then(byte_slice(msg, pl.col("_colon") + 2)).otherwise(msg),
    )
    lf = lf.with_columns(_body=_strip_level(pl.col("_body")))
    lf = lf.with_columns(_pc=_proc_class())
    pc, body = pl.col("_pc"), pl.col("_body")
    # one sub-frame per process class, so that each test runs only on the rows it can decide
    lf = pl.concat(
        [
            lf.filter(pc == 1).with_columns(_line=_login_kind(body)),
            lf.filter(pc == 2).with_columns(_line=pl.lit("auth")),
            lf.filter(pc == 3).with_columns(
                _line=pl.when(body.str.contains(" in=|retr="))
                .then(pl.lit("logout"))
                .otherwise(pl.lit("noise:dovecot_mail"))
            ),
            lf.filter(pc == 0).with_columns(_line=_other_kind()),
        ],
        how="vertical",
    )
    # materialised once: otherwise the optimiser pushes each kind's filter into the union above
    # and recomputes the classification once per kind
    df = lf.collect(engine="in-memory")
    lf, names = df.lazy(), tuple(df.columns)
    kind = pl.col("_line")
    rest = lf.filter(kind.str.starts_with("noise:")).with_columns(
        pl.col("_line").alias(KIND), pl.lit("dovecot").alias(C.DAEMON)
    )
    return pl.concat(
        [
            finish(_login(lf.filter(kind.str.starts_with("login_"))), (STAGE,), ("dv_login", names)),
            finish(_auth(lf.filter(kind == "auth")), (STAGE,), ("dv_auth", names)),
            finish(_logout(lf.filter(kind == "logout")), (STAGE,), ("dv_logout", names)),
            finish(_pam(lf.filter(kind == "pam")), (STAGE,), ("dv_pam", names)),
            finish(rest, (STAGE,), ("dv_rest", names)),
        ],
        how="vertical",
    )


_LOGIN_MARKERS = ("user=<", "method=", "rip=", "lip=", "rport=", "lport=", "mpid=", "session=<")
"""Keys of Dovecot's login fields: the user name (first, verbatim, only control characters
replaced) may carry copies; a line where one occurs twice is ``ambiguous_field``."""


def _login(lf: pl.LazyFrame) -> pl.LazyFrame:
    body, kind = pl.col("_body"), pl.col("_line")
    user_at = pl.concat_str([pl.lit("user=<"), after(body, ": user=<")])
    fields = (
        pl.when(kind == "login_ok")
        .then(byte_slice(body, 7))
        .otherwise(pl.coalesce(user_at, after(body, "): ")))
    )
    lf = lf.with_columns(_f0=fields)
    f0 = pl.col("_f0")
    common = f0.str.contains(_LOGIN_FIELDS).fill_null(False)
    lf = lf.with_columns(_common=common)
    parts = pl.col("_l")
    fast = (
        lf.filter(pl.col("_common"))
        .with_columns(_l=f0.str.split(", "))
        .with_columns(
            _nonempty(parts.list.first().str.slice(6).str.strip_suffix(">"))
            .str.to_lowercase()
            .alias(C.ACCOUNT),
            canonical_ip(parts.list.get(2).str.slice(4).str.strip_chars()).alias(C.SOURCE_IP),
            pl.lit(None, pl.Int32).alias(C.SOURCE_PORT),
            canonical_ip(parts.list.get(3).str.slice(4).str.strip_chars()).alias(C.LOCAL_IP),
            parts.list.get(1).str.slice(7).str.to_uppercase().alias(C.AUTH_METHOD),
            (f0.str.contains(", TLS", literal=True) | f0.str.contains(", secured", literal=True)).alias(
                C.TLS
            ),
            _nonempty(parts.list.last().str.slice(9).str.strip_suffix(">")).alias(C.SESSION_ID),
            pl.lit("event").alias(KIND),
        )
        .drop("_l")
    )
    slow = _login_fields(lf.filter(~pl.col("_common")))
    lf = pl.concat([fast, slow], how="vertical").drop("_common", "_f0")
    attempts = to_int(after(_head(body), "(auth failed, "), pl.Int32).fill_null(1)
    return lf.with_columns(
        pl.lit("dovecot").alias(C.DAEMON),
        _service(pl.col("_proc")).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(kind == "login_ok")
        .then(pl.lit(Outcome.SUCCESS))
        .when(kind == "login_policy")
        .then(pl.lit(Outcome.POLICY))
        .otherwise(pl.lit(Outcome.FAILURE))
        .alias(C.OUTCOME),
        pl.when(kind == "login_fail").then(attempts).otherwise(1).alias(C.ATTEMPTS),
        pl.when(kind == "login_ok")
        .then(pl.lit(None, pl.String))
        .when(kind == "login_policy")
        .then(pl.lit("plaintext auth refused"))
        .when((kind == "login_proxy") | _head(body).str.contains(PROXY_DEST, literal=True))
        .then(pl.lit(PROXY_REASON))
        .otherwise(pl.lit("auth failed"))
        .alias(C.REASON),
        pl.when(kind == "login_fail")
        .then(pl.lit("dv_login_fail"))
        .when(kind == "login_proxy")
        .then(pl.lit("dv_proxy_fail"))
        .alias(STAGE),
        # Dovecot 2.0/2.1 wrote the proxy failure without the client's fields: nothing to read
        pl.when((kind == "login_proxy") & (pl.col(KIND) == "unparsed"))
        .then(pl.lit("noise:dovecot_proxy"))
        .otherwise(pl.col(KIND))
        .alias(KIND),
    )


def _nonempty(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.len_bytes() > 0).then(text)


def _login_fields(lf: pl.LazyFrame) -> pl.LazyFrame:
    """The login fields wherever they are (any version's layout): each key searched in the text."""
    lf = lf.with_columns(_f=pl.concat_str([pl.lit(" "), pl.col("_f0").fill_null(pl.col("_body"))]))
    f = pl.col("_f")
    rip = between(f, "rip=", ",")
    # the user is written verbatim: it ends at the last ``>`` before the daemon's next field
    user = pl.coalesce(
        f.str.extract(r"(?s) user=<(.*)>, (?:method|rip|lip|rport|lport|mpid|session)=", 1),
        f.str.extract(r"(?s) user=<(.*)>$", 1),
    )
    return lf.with_columns(
        _nonempty(user).str.to_lowercase().alias(C.ACCOUNT),
        canonical_ip(rip.str.strip_chars()).alias(C.SOURCE_IP),
        to_int(between(f, "rport=", ","), pl.Int32).alias(C.SOURCE_PORT),
        canonical_ip(between(f, "lip=", ",").str.strip_chars()).alias(C.LOCAL_IP),
        between(f, "method=", ",").str.to_uppercase().alias(C.AUTH_METHOD),
        (f.str.contains(", TLS", literal=True) | f.str.contains(", secured", literal=True)).alias(C.TLS),
        angle(f, "session").alias(C.SESSION_ID),
        # only these rows can hold a marker twice: the common layout's user has no ``=``
        pl.when(repeated(pl.col("_body"), *_LOGIN_MARKERS))
        .then(pl.lit(AMBIGUOUS))
        .when(rip.is_null())
        .then(pl.lit("unparsed"))
        .otherwise(pl.lit("event"))
        .alias(KIND),
    ).drop("_f")


def _passdb(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``_g1``..``_g5`` = passdb, user, address, session, reason of ``<passdb>(user,ip[,<session>]): reason``.

    The common shape (the line starts with it, the user has no comma) is one anchored capture
    and a literal split; the others go through the unanchored :data:`_PASSDB` regex (3x the cost).
    """
    body = pl.col("_body")
    lf = lf.with_columns(_g=body.str.extract_groups(_PASSDB_HEAD))
    common = pl.col("_g").struct.field("1").is_not_null()
    g = pl.col("_g").struct
    fast = lf.filter(common).with_columns(
        _g1=g.field("1"),
        _g2=g.field("2"),
        _g3=g.field("3"),
        _g4=g.field("4"),
        _g5=after(body, "): "),
        _unreadable=pl.lit(False),
    )
    slow = lf.filter(~common).with_columns(_g=body.str.extract_groups(_PASSDB))
    slow = slow.with_columns(**{f"_g{i}": g.field(str(i)) for i in range(1, 6)})
    # no address: the passdb, the user and the session of a local client's line
    local = body.str.extract_groups(_PASSDB_LOCAL).struct
    slow = slow.with_columns(
        _g1=pl.coalesce(pl.col("_g1"), local.field("1")),
        _g2=pl.coalesce(pl.col("_g2"), local.field("2")),
        _g3=pl.when(pl.col("_g1").is_null() & local.field("1").is_not_null())
        .then(pl.lit(""))
        .otherwise(pl.col("_g3")),
        _g4=pl.coalesce(pl.col("_g4"), local.field("3")),
        _g5=pl.coalesce(pl.col("_g5"), local.field("4")),
    ).with_columns(_unreadable=pl.col("_g1").is_null() & _looks_failed(body))
    return pl.concat([fast.drop("_g"), slow.drop("_g")], how="vertical")


def _auth(lf: pl.LazyFrame) -> pl.LazyFrame:
    lf = _passdb(lf)
    reason_full = pl.col("_g5")
    reason = before(before(reason_full, " (given password"), " (SHA1 of given").str.strip_chars()
    lf = lf.with_columns(_reason=reason)
    lf = lf.with_columns(_outcome=_outcome_of_reason(pl.col("_reason")))
    reason, outcome = pl.col("_reason"), pl.col("_outcome")
    return lf.with_columns(
        pl.lit("dovecot").alias(C.DAEMON),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        outcome.alias(C.OUTCOME),
        pl.col("_g2").str.to_lowercase().alias(C.ACCOUNT),
        canonical_ip(pl.col("_g3")).alias(C.SOURCE_IP),
        pl.col("_g4").alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        reason.alias(C.REASON),
        _given_password(reason_full).alias(C.PASSWORD_HASH),
        pl.when(pl.col("_body").str.count_matches(_IDENTIFIER_TAIL).fill_null(0) > 1)
        .then(pl.lit(AMBIGUOUS))
        .when(pl.col("_unreadable"))
        .then(pl.lit("unparsed"))
        .when(outcome.is_null())
        .then(pl.lit("noise:dovecot_auth"))
        .when(pl.col("_g3").str.len_bytes() == 0)
        .then(pl.lit("noise:dovecot_auth_local"))
        .otherwise(pl.lit("event"))
        .alias(KIND),
        pl.lit("dv_auth").alias(STAGE),
    )


def _logout(lf: pl.LazyFrame) -> pl.LazyFrame:
    proc, body = pl.col("_proc"), pl.col("_body")
    user = between(proc, "(", ")")
    ids = after(proc, ")")
    session = pl.when(ids.str.count_matches("<", literal=True) >= 2).then(between(after(ids, "><"), "", ">"))
    pop = body.str.contains("retr=", literal=True)
    b = pl.concat_str([pl.lit(" "), body])
    bytes_pair = between(b, " bytes=", " ")
    return lf.with_columns(
        pl.lit("dovecot").alias(C.DAEMON),
        _service(proc).alias(C.SERVICE),
        pl.lit(Action.LOGOUT).alias(C.ACTION),
        user.str.to_lowercase().alias(C.ACCOUNT),
        session.alias(C.SESSION_ID),
        pl.when(pop)
        .then(to_int(before(bytes_pair, "/")))
        .otherwise(to_int(between(b, " in=", " ")))
        .alias(C.BYTES_IN),
        pl.when(pop)
        .then(to_int(between(b, " size=", ",")))
        .otherwise(to_int(between(b, " out=", " ")))
        .alias(C.BYTES_OUT),
        pl.when(pop).then(to_int(between(between(b, "retr=", ","), "/", ","))).alias(C.MESSAGE_SIZE),
        before(before(before(body, " in="), " top="), ":").alias(C.REASON),
        pl.lit("event").alias(KIND),
    )


def _pam(lf: pl.LazyFrame) -> pl.LazyFrame:
    """pam_unix writes ``... tty=dovecot ruser=<user> rhost=<address>  user=<user>``: both user
    fields are the name given by the client, verbatim; ``rhost`` is Dovecot's remote address.
    A line with a second ``rhost=``/``ruser=``/``user=`` is ``ambiguous_field``."""
    t = pl.concat_str([_text(), pl.lit(" ")])
    user = between(t, " ruser=", " rhost=")
    user = pl.when(user.str.len_bytes() > 0).then(user).otherwise(after(t, "  user=").str.strip_suffix(" "))
    rhost = between(t, " rhost=", " ")
    ambiguous = repeated(t, " rhost=", " ruser=", " user=")
    return lf.with_columns(
        pl.lit("dovecot").alias(C.DAEMON),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.FAILURE).alias(C.OUTCOME),
        pl.when(user.str.len_bytes() > 0).then(user.str.to_lowercase()).alias(C.ACCOUNT),
        canonical_ip(rhost).alias(C.SOURCE_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.lit("pam authentication failure").alias(C.REASON),
        pl.when(ambiguous)
        .then(pl.lit(AMBIGUOUS))
        .when(rhost.str.len_bytes() > 0)
        .then(pl.lit("event"))
        .otherwise(pl.lit("unparsed"))
        .alias(KIND),
        pl.lit("dv_pam").alias(STAGE),
    )


PARSER = register(
    LineParser(
        name="dovecot",
        claims=claims,
        parse=parse,
        doc="Dovecot 2.2-2.4 logins, login failures, passdb failures (auth/auth-worker), session ends with traffic.",
    )
)
