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

import polars as pl

from detector.ingest.fields import after, angle, before, between, canonical_ip, finish, to_int
from detector.ingest.registry import KIND, LineParser, register
from detector.schema import Action, C, Outcome, Service

STAGE = "_stage"
"""Private column read by ``correlate``: ``dv_auth`` / ``dv_login_fail`` rows take part in merging."""

_PROCS = ("auth", "imap", "pop3", "lmtp", "managesieve", "submission", "master", "doveadm", "indexer", "lda")
_LEVELS = ("Info: ", "Warning: ", "Error: ", "Fatal: ", "Panic: ", "Debug: ")
_PASSDB = r"([A-Za-z][\w-]*)\(([^()]*?),([0-9A-Fa-f:.%\[\]]*)(?:,<([^>]*)>)?\): (.*)$"
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


def claims() -> pl.Expr:
    prog = pl.col("program")
    return (
        prog.str.starts_with("dovecot")
        | prog.str.ends_with("-login")
        | prog.str.starts_with("auth-worker")
        | (pl.col(C.HOST).is_null() & pl.any_horizontal([prog.str.starts_with(p) for p in _PROCS]))
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


def _outcome_of_reason(reason: pl.Expr) -> pl.Expr:
    r = reason.str.to_lowercase()
    return (
        pl.when(r.str.contains_any(["unknown user", "user not known", "no such user"]))
        .then(pl.lit(Outcome.UNKNOWN_USER))
        .when(r.str.contains("policy", literal=True))
        .then(pl.lit(Outcome.POLICY))
        .when(
            r.str.contains_any(["expired", "disabled", "locked", "pam_acct_mgmt", "nologin", "not allowed"])
        )
        .then(pl.lit(Outcome.DISABLED))
        .when(
            r.str.contains_any(
                ["mismatch", "authentication failure", "invalid credentials", "password", "auth failed"]
            )
        )
        .then(pl.lit(Outcome.FAILURE))
        .when(r.str.contains_any(["failed", "error", "timeout", "timed out", "temporary", "lookup"]))
        .then(pl.lit(Outcome.TEMPFAIL))
    )


def _looks_failed(body: pl.Expr) -> pl.Expr:
    b = body.str.to_lowercase()
    return b.str.contains_any(["mismatch", "unknown user", "authentication fail", "auth failed"])


def _service(proc: pl.Expr) -> pl.Expr:
    name = proc.str.replace(r"[(<].*$", "")
    return name.replace_strict(_SERVICES, default=None, return_dtype=pl.String)


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    lf = lf.with_columns(_t=_text())
    t = pl.col("_t")
    colon = t.str.find(": ", literal=True)
    lf = lf.with_columns(_proc=t.str.head(colon), _body=_strip_level(t.str.slice(colon + 2)))
    proc, body = pl.col("_proc"), pl.col("_body")
    is_login_proc = proc.str.ends_with("-login")
    is_auth_proc = proc.str.starts_with("auth")
    is_mail_proc = (
        proc.str.starts_with("imap(")
        | proc.str.starts_with("pop3(")
        | proc.str.starts_with("submission(")
        | proc.str.starts_with("managesieve(")
    )
    line = (
        pl.when(is_login_proc)
        .then(
            pl.when(body.str.starts_with("Login: "))
            .then(pl.lit("login_ok"))
            .when(body.str.contains("(auth failed", literal=True))
            .then(pl.lit("login_fail"))
            .when(body.str.contains("plaintext auth)", literal=True))
            .then(pl.lit("login_policy"))
            .otherwise(pl.lit("noise:dovecot_login"))
        )
        .when(is_auth_proc)
        .then(pl.lit("auth"))
        .when(is_mail_proc)
        .then(
            pl.when(body.str.contains(" in=", literal=True) | body.str.contains("retr=", literal=True))
            .then(pl.lit("logout"))
            .otherwise(pl.lit("noise:dovecot_mail"))
        )
        .when(t.str.starts_with("pam_unix(") & t.str.contains("authentication failure", literal=True))
        .then(pl.lit("pam"))
        .otherwise(pl.lit("noise:dovecot_other"))
    )
    lf = lf.with_columns(_line=line)
    kind = pl.col("_line")
    rest = lf.filter(kind.str.starts_with("noise:")).with_columns(
        pl.col("_line").alias(KIND), pl.lit("dovecot").alias(C.DAEMON)
    )
    return pl.concat(
        [
            finish(_login(lf.filter(kind.str.starts_with("login_"))), keep=(STAGE,)),
            finish(_auth(lf.filter(kind == "auth")), keep=(STAGE,)),
            finish(_logout(lf.filter(kind == "logout")), keep=(STAGE,)),
            finish(_pam(lf.filter(kind == "pam")), keep=(STAGE,)),
            finish(rest, keep=(STAGE,)),
        ],
        how="vertical",
    )


def _login(lf: pl.LazyFrame) -> pl.LazyFrame:
    body, kind = pl.col("_body"), pl.col("_line")
    attempts = to_int(after(body, "(auth failed, "), pl.Int32)
    fields = after(body, "): ")
    fields = pl.when(kind == "login_ok").then(body.str.slice(7)).otherwise(fields)
    lf = lf.with_columns(_f=pl.concat_str([pl.lit(" "), fields.fill_null(body)]))
    f = pl.col("_f")
    rip = between(f, "rip=", ",")
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
        angle(f, "user").str.to_lowercase().alias(C.ACCOUNT),
        canonical_ip(rip.str.strip_chars()).alias(C.SOURCE_IP),
        to_int(between(f, "rport=", ","), pl.Int32).alias(C.SOURCE_PORT),
        canonical_ip(between(f, "lip=", ",").str.strip_chars()).alias(C.LOCAL_IP),
        between(f, "method=", ",").str.to_uppercase().alias(C.AUTH_METHOD),
        (f.str.contains(", TLS", literal=True) | f.str.contains(", secured", literal=True)).alias(C.TLS),
        angle(f, "session").alias(C.SESSION_ID),
        pl.when(kind == "login_fail").then(attempts).otherwise(1).alias(C.ATTEMPTS),
        pl.when(kind == "login_ok")
        .then(pl.lit(None, pl.String))
        .when(kind == "login_policy")
        .then(pl.lit("plaintext auth refused"))
        .otherwise(pl.lit("auth failed"))
        .alias(C.REASON),
        pl.when(rip.is_null()).then(pl.lit("unparsed")).otherwise(pl.lit("event")).alias(KIND),
        pl.when(kind == "login_fail").then(pl.lit("dv_login_fail")).alias(STAGE),
    )


def _auth(lf: pl.LazyFrame) -> pl.LazyFrame:
    g = pl.col("_body").str.extract_groups(_PASSDB)
    lf = lf.with_columns(_g=g)
    g = pl.col("_g").struct
    reason_full = g.field("5")
    reason = before(before(reason_full, " (given password"), " (SHA1 of given").str.strip_chars()
    outcome = _outcome_of_reason(reason)
    return lf.with_columns(
        pl.lit("dovecot").alias(C.DAEMON),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        outcome.alias(C.OUTCOME),
        g.field("2").str.to_lowercase().alias(C.ACCOUNT),
        canonical_ip(g.field("3")).alias(C.SOURCE_IP),
        g.field("4").alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        reason.alias(C.REASON),
        _given_password(reason_full).alias(C.PASSWORD_HASH),
        pl.when(g.field("1").is_null() & _looks_failed(pl.col("_body")))
        .then(pl.lit("unparsed"))
        .when(outcome.is_null())
        .then(pl.lit("noise:dovecot_auth"))
        .when(g.field("3").str.len_bytes() == 0)
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
    t = pl.concat_str([pl.col("_t"), pl.lit(" ")])
    user = between(t, " ruser=", " ")
    user = pl.when(user.str.len_bytes() > 0).then(user).otherwise(between(t, " user=", " "))
    rhost = between(t, " rhost=", " ")
    return lf.with_columns(
        pl.lit("dovecot").alias(C.DAEMON),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.FAILURE).alias(C.OUTCOME),
        pl.when(user.str.len_bytes() > 0).then(user.str.to_lowercase()).alias(C.ACCOUNT),
        canonical_ip(rhost).alias(C.SOURCE_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.lit("pam authentication failure").alias(C.REASON),
        pl.when(rhost.str.len_bytes() > 0).then(pl.lit("event")).otherwise(pl.lit("unparsed")).alias(KIND),
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
