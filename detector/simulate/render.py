"""Turn sessions into the log lines Dovecot 2.3 and Postfix 3.x write, and write them per server and day.

Servers:
- ``imap1``: Dovecot to syslog, RFC 3164 stamps in UTC, ``passwd-file`` passdb (``auth:`` lines),
  no password hashes.
- ``imap2``: Dovecot to rsyslog with high-precision ISO 8601 stamps in Paris time (``+01:00``),
  ``sql`` passdb in auth workers, ``auth_verbose_passwords = sha1:6``; the file is gzip-compressed.
- ``smtp1``: Postfix submission (port 587) with Dovecot SASL on the same host (``auth:`` lines with
  password hashes), RFC 3164 stamps in UTC.

Every line is built column-wise with polars string expressions; no Python loop per line.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
from pathlib import Path

import numpy as np
import polars as pl

from detector.simulate import plan
from detector.simulate.population import DOMAIN
from detector.simulate.sessions import DAY, US, day_start

SERVERS = ("imap1", "imap2", "smtp1")


def file_name(server: str, day: int, days: int) -> str:
    """imap1's newest file is plain text; every other file is gzip-compressed (rotated or compressed by rsyslog)."""
    gz = server != "imap1" or day < days - 1
    return f"{server}-mail.log{'.gz' if gz else ''}"


DOVECOT_PID = {"imap1": 1187, "imap2": 934, "smtp1": 1402}
INTERNAL_LIP = {"imap1": "10.20.0.1", "imap2": "10.20.0.2"}
WEBMAIL_HOST = f"webmail.{DOMAIN}"
B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8)
HEXU = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)

LINE_SCHEMA = {"server": pl.String, "ts": pl.Int64, "seq": pl.Int64, "prog": pl.String, "body": pl.String}


def _tokens(rng: np.random.Generator, n: int, width: int, alphabet: np.ndarray) -> pl.Series:
    idx = rng.integers(0, len(alphabet), (n, width))
    raw = np.ascontiguousarray(alphabet[idx]).view(f"S{width}").ravel()
    return pl.Series(raw.astype(f"U{width}"))


def prepare(rng: np.random.Generator, sessions: pl.DataFrame) -> pl.DataFrame:
    """Sort sessions and give each its server, ids and process numbers."""
    s = sessions.sort(["ts", "account", "ip", "service", "outcome"], maintain_order=True)
    n = s.height
    imap_server = np.where(rng.random(n) < 0.5, "imap1", "imap2")
    return s.with_columns(
        sid=pl.int_range(pl.len(), dtype=pl.Int64),
        server=pl.when(pl.col("service") == "submission")
        .then(pl.lit("smtp1"))
        .otherwise(pl.Series(imap_server)),
        session=_tokens(rng, n, 16, B64),
        mpid=pl.Series(rng.integers(10_000, 65_000, n)),
        worker=pl.Series(rng.integers(3_000, 3_004, n)),
        smtpd=pl.Series(rng.integers(2_000, 40_000, n)),
        variant=pl.Series(rng.random(n)),
    )


def _lines(
    frame: pl.DataFrame, ts: pl.Expr, order: int | pl.Expr, prog: pl.Expr, body: pl.Expr
) -> pl.DataFrame:
    return frame.select(
        server=pl.col("server"),
        ts=ts,
        seq=pl.col("sid") * 256 + order,
        prog=prog,
        body=body,
    )


def _s(x: str) -> pl.Expr:
    return pl.lit(x)


def _i(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String)


def dovecot_lines(s: pl.DataFrame) -> list[pl.DataFrame]:
    d = s.filter(pl.col("service") != "submission")
    prog = pl.concat_str(
        _s("dovecot["), pl.col("server").replace_strict(DOVECOT_PID, return_dtype=pl.String), _s("]")
    )
    lip = (
        pl.when(pl.col("webmail"))
        .then(pl.col("server").replace_strict(INTERNAL_LIP, default=""))
        .otherwise(pl.col("server").replace_strict(plan.IMAP_LIP, default=""))
    )
    tls = pl.when(pl.col("webmail")).then(_s("secured")).otherwise(_s("TLS"))
    who = pl.concat_str(
        _s("user=<"), "account", _s(">, method="), "method", _s(", rip="), "ip", _s(", lip="), lip
    )
    out = []

    ok = d.filter(pl.col("outcome") == "success")
    out.append(
        _lines(
            ok,
            pl.col("ts"),
            0,
            prog,
            pl.concat_str(
                "service",
                _s("-login: Login: "),
                who,
                _s(", mpid="),
                _i("mpid"),
                _s(", "),
                tls,
                _s(", session=<"),
                "session",
                _s(">"),
            ),
        )
    )
    tail = pl.concat_str(
        pl.col("service"), _s("("), "account", _s(")<"), _i("mpid"), _s("><"), "session", _s(">: ")
    )
    imap_end = pl.concat_str(
        tail,
        pl.when((pl.col("duration") > 28 * 60 * US) & ~pl.col("webmail"))
        .then(_s("Disconnected for inactivity in="))
        .otherwise(_s("Disconnected: Logged out in=")),
        _i("bytes_in"),
        _s(" out="),
        _i("bytes_out"),
        _s(" deleted=0 expunged=0 trashed=0 hdr_count="),
        (pl.col("bytes_out") // 2400).cast(pl.String),
        _s(" hdr_bytes="),
        (pl.col("bytes_out") // 5).cast(pl.String),
        _s(" body_count="),
        (pl.col("bytes_out") // 60_000).cast(pl.String),
        _s(" body_bytes="),
        (pl.col("bytes_out") * 3 // 4).cast(pl.String),
    )
    pop_end = pl.concat_str(
        tail,
        _s("Disconnected: Logged out top=0/0, retr="),
        _i("messages"),
        _s("/"),
        _i("msg_size"),
        _s(", del=0/"),
        (pl.col("messages") + pl.col("mpid") % 40).cast(pl.String),
        _s(", size="),
        (pl.col("msg_size") + (pl.col("mpid") % 40) * 48_000).cast(pl.String),
    )
    out.append(
        _lines(
            ok,
            pl.col("ts") + pl.col("duration"),
            100,
            prog,
            pl.when(pl.col("service") == "pop3").then(pop_end).otherwise(imap_end),
        )
    )

    bad = d.filter(pl.col("outcome") != "success")
    reason = (
        pl.when(pl.col("outcome") == "unknown_user")
        .then(_s("unknown user"))
        .otherwise(_s("Password mismatch"))
    )
    tries = bad.with_columns(j=pl.int_ranges(0, pl.col("attempts"))).explode("j")
    # The j-th password of a multi-attempt connection differs from the first.
    pw = pl.when(pl.col("j") == 0).then(pl.col("pw_hash")).otherwise(_hex6(pl.col("pw_hash"), pl.col("j")))
    auth1 = pl.concat_str(
        _s("auth: passwd-file("), "account", _s(","), "ip", _s(",<"), "session", _s(">): "), reason
    )
    auth2 = pl.concat_str(
        _s("auth-worker("),
        _i("worker"),
        _s("): sql("),
        "account",
        _s(","),
        "ip",
        _s(",<"),
        "session",
        _s(">): "),
        reason,
        _s(" (SHA1 of given password: "),
        pw,
        _s(")"),
    )
    step = pl.col("duration") // pl.col("attempts").clip(1)
    out.append(
        _lines(
            tries,
            pl.col("ts") + pl.col("j") * step + step // 3,
            1 + pl.col("j"),
            prog,
            pl.when(pl.col("server") == "imap1").then(auth1).otherwise(auth2),
        )
    )
    secs = (pl.col("duration") // US).cast(pl.String)
    closed = pl.col("variant") < 0.15
    disc = pl.concat_str(
        pl.col("service"),
        pl.when(closed)
        .then(_s("-login: Disconnected: Connection closed (auth failed, "))
        .otherwise(_s("-login: Disconnected (auth failed, ")),
        _i("attempts"),
        _s(" attempts in "),
        secs,
        _s(" secs): "),
        who,
        pl.when(closed).then(_s(", TLS: Connection closed, session=<")).otherwise(_s(", TLS, session=<")),
        "session",
        _s(">"),
    )
    out.append(_lines(bad, pl.col("ts") + pl.col("duration"), 100, prog, disc))
    return out


def _hex6(h: pl.Expr, j: pl.Expr) -> pl.Expr:
    """A different 6-hex-digit value for the j-th try (deterministic)."""
    v = (h.str.to_integer(base=16) * 40503 + j * 9973).mod(1 << 24)
    return _hex_expr(v)


def _hex_expr(v: pl.Expr) -> pl.Expr:
    digit = {i: f"{i:x}" for i in range(16)}
    return pl.concat_str(
        [((v // (16**k)) % 16).replace_strict(digit, return_dtype=pl.String) for k in range(5, -1, -1)]
    )


def postfix_lines(s: pl.DataFrame, rng: np.random.Generator) -> list[pl.DataFrame]:
    p = s.filter(pl.col("service") == "submission")
    smtpd = pl.concat_str(_s("postfix/submission/smtpd["), _i("smtpd"), _s("]"))
    host = pl.when(pl.col("ip") == plan.WEBMAIL_LIP).then(_s(WEBMAIL_HOST)).otherwise(_s("unknown"))
    peer = pl.concat_str(host, _s("["), "ip", _s("]"))
    out = [_lines(p, pl.col("ts"), 0, smtpd, pl.concat_str(_s("connect from "), peer))]

    ok = p.filter(pl.col("outcome") == "success")
    msgs = ok.with_columns(j=pl.int_ranges(0, pl.col("messages"))).explode("j")
    msgs = msgs.with_columns(qid=_tokens(rng, msgs.height, 10, HEXU))
    at = pl.col("ts") + (pl.col("j") + 1) * pl.col("duration") // (pl.col("messages") + 1)
    out.append(
        _lines(
            msgs,
            at,
            1 + 4 * pl.col("j"),
            smtpd,
            pl.concat_str(
                "qid",
                _s(": client="),
                peer,
                _s(", sasl_method="),
                "method",
                _s(", sasl_username="),
                "account",
            ),
        )
    )
    out.append(
        _lines(
            msgs,
            at + 40_000,
            2 + 4 * pl.col("j"),
            pl.concat_str(_s("postfix/cleanup["), (pl.col("smtpd") + 1).cast(pl.String), _s("]")),
            pl.concat_str(
                "qid", _s(": message-id=<"), "qid", _s("."), "session", _s("@"), _s(DOMAIN), _s(">")
            ),
        )
    )
    out.append(
        _lines(
            msgs,
            at + 90_000,
            3 + 4 * pl.col("j"),
            _s("postfix/qmgr[1423]"),
            pl.concat_str(
                "qid",
                _s(": from=<"),
                "account",
                _s(">, size="),
                _i("msg_size"),
                _s(", nrcpt="),
                _i("rcpt"),
                _s(" (queue active)"),
            ),
        )
    )
    out.append(
        _lines(
            msgs,
            at + 900_000,
            4 + 4 * pl.col("j"),
            _s("postfix/qmgr[1423]"),
            pl.concat_str("qid", _s(": removed")),
        )
    )
    tls = pl.col("ip") != plan.WEBMAIL_LIP
    rcpts = pl.col("messages") * pl.col("rcpt")
    counters = pl.concat_str(
        pl.when(tls).then(_s(" ehlo=2 starttls=1")).otherwise(_s(" ehlo=1")),
        _s(" auth=1 mail="),
        _i("messages"),
        _s(" rcpt="),
        rcpts.cast(pl.String),
        _s(" data="),
        _i("messages"),
        _s(" quit=1 commands="),
        (pl.when(tls).then(5).otherwise(3) + 2 * pl.col("messages") + rcpts).cast(pl.String),
    )
    out.append(
        _lines(
            ok,
            pl.col("ts") + pl.col("duration") + 1_000_000,
            250,
            smtpd,
            pl.concat_str(_s("disconnect from "), peer, counters),
        )
    )

    bad = p.filter(pl.col("outcome") != "success")
    reason = (
        pl.when(pl.col("outcome") == "unknown_user")
        .then(_s("unknown user"))
        .otherwise(_s("Password mismatch"))
    )
    out.append(
        _lines(
            bad,
            pl.col("ts") + pl.col("duration") // 3,
            1,
            _s(f"dovecot[{DOVECOT_PID['smtp1']}]"),
            pl.concat_str(
                _s("auth: passwd-file("),
                "account",
                _s(","),
                "ip",
                _s("): "),
                reason,
                _s(" (SHA1 of given password: "),
                "pw_hash",
                _s(")"),
            ),
        )
    )
    out.append(
        _lines(
            bad,
            pl.col("ts") + pl.col("duration") * 2 // 3,
            2,
            smtpd,
            pl.concat_str(_s("warning: "), peer, _s(": SASL LOGIN authentication failed: UGFzc3dvcmQ6")),
        )
    )
    lost = pl.col("variant") < 0.2
    out.append(
        _lines(
            bad.filter(lost),
            pl.col("ts") + pl.col("duration") - 1000,
            3,
            smtpd,
            pl.concat_str(_s("lost connection after AUTH from "), peer),
        )
    )
    out.append(
        _lines(
            bad,
            pl.col("ts") + pl.col("duration"),
            4,
            smtpd,
            pl.concat_str(
                _s("disconnect from "),
                peer,
                pl.when(lost)
                .then(_s(" ehlo=1 auth=0/1 commands=1/2"))
                .otherwise(_s(" ehlo=1 auth=0/1 quit=1 commands=2/3")),
            ),
        )
    )
    return out


def noise_lines(rng: np.random.Generator, start: dt.date, days: int, s: pl.DataFrame) -> pl.DataFrame:
    """Start-up and reload lines, rsyslog HUPs, mail deliveries (known non-events)."""
    rows = []
    for d in range(days):
        t = day_start(start, d)
        for server in ("imap1", "imap2"):
            body = (
                "master: Dovecot v2.3.21 (47349e2482) starting up for imap, pop3, lmtp (core dumps disabled)"
                if d == 0
                else "master: Warning: SIGHUP received - reloading configuration"
            )
            rows.append((server, t + 2 * US, -1, f"dovecot[{DOVECOT_PID[server]}]", body))
        rows.append(
            (
                "imap2",
                t + 1 * US,
                -2,
                "rsyslogd",
                '[origin software="rsyslogd" swVersion="8.2302.0" x-pid="812" x-info="https://www.rsyslog.com"] rsyslogd was HUPed',
            )
        )
        if d == 0:
            rows.append(
                (
                    "smtp1",
                    t + 3 * US,
                    -1,
                    "postfix/master[1401]",
                    "daemon started -- version 3.7.11, configuration /etc/postfix",
                )
            )
            rows.append(
                (
                    "smtp1",
                    t + 4 * US,
                    -1,
                    f"dovecot[{DOVECOT_PID['smtp1']}]",
                    "master: Dovecot v2.3.21 (47349e2482) starting up without any protocols (core dumps disabled)",
                )
            )
    fixed = pl.DataFrame(rows, schema=LINE_SCHEMA, orient="row")
    # Local deliveries: a few per mailbox and day, on either IMAP server.
    benign = s.filter(pl.col("campaign").is_null() & (pl.col("outcome") == "success"))
    pick = benign.filter(pl.Series(rng.random(benign.height) < 0.06))
    delivered = pick.select(
        server=pl.col("server").replace("smtp1", "imap1"),
        ts=pl.col("ts") - 7 * 60 * US,
        seq=pl.col("sid") * 256 + 200,
        prog=pl.concat_str(
            _s("dovecot["),
            pl.col("server").replace_strict(
                {**DOVECOT_PID, "smtp1": DOVECOT_PID["imap1"]}, return_dtype=pl.String
            ),
            _s("]"),
        ),
        body=pl.concat_str(
            _s("lmtp("),
            "account",
            _s(")<"),
            (pl.col("mpid") + 7).cast(pl.String),
            _s("><"),
            "session",
            _s(">: msgid=<"),
            pl.col("session").str.slice(0, 8),
            _s("@mx.example.net>: saved mail to INBOX"),
        ),
    )
    return pl.concat([fixed, delivered])


def envelope(lines: pl.DataFrame) -> pl.DataFrame:
    """Add the syslog envelope each server writes, and the UTC date the line belongs to."""
    when = pl.col("ts").cast(pl.Datetime("us", "UTC"))
    rfc3164 = pl.concat_str(
        when.dt.strftime("%b %e %H:%M:%S"), _s(" "), "server", _s(" "), "prog", _s(": "), "body"
    )
    iso = pl.concat_str(
        when.dt.convert_time_zone("Europe/Paris").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z"),
        _s(" "),
        "server",
        _s(" "),
        "prog",
        _s(": "),
        "body",
    )
    return lines.sort(["server", "ts", "seq"]).with_columns(
        date=when.dt.date(),
        line=pl.when(pl.col("server") == "imap2").then(iso).otherwise(rfc3164),
    )


def write_logs(
    rng: np.random.Generator, lines: pl.DataFrame, out_dir: Path, start: dt.date, days: int
) -> dict[str, int]:
    """Write one file per server and day; return lines written per file (relative path)."""
    counts: dict[str, int] = {}
    for d in range(days):
        date = start + dt.timedelta(days=d)
        day_dir = out_dir / date.isoformat()
        day_dir.mkdir(parents=True, exist_ok=True)
        for server in SERVERS:
            part = lines.filter((pl.col("server") == server) & (pl.col("date") == date))["line"]
            text = part.to_list()
            data = _with_damage(rng, text, server, d)
            path = day_dir / file_name(server, d, days)
            if path.suffix == ".gz":
                buf = io.BytesIO()
                with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
                    gz.write(data)
                path.write_bytes(buf.getvalue())
            else:
                path.write_bytes(data)
            # RFC 3164 stamps carry no year: ingestion infers it from the file's modification time.
            end = (day_start(start, d) + DAY) // US - 1
            os.utime(path, (end, end))
            counts[f"{date.isoformat()}/{path.name}"] = len(text)
    return counts


def _with_damage(rng: np.random.Generator, text: list[str], server: str, day: int) -> bytes:
    """Join lines; on the first day cut one line short (imap1) and add a line of junk bytes (smtp1)."""
    lines = [t.encode() for t in text]
    if day == 0 and len(lines) > 10:
        k = int(rng.integers(len(lines) // 3, 2 * len(lines) // 3))
        if server == "imap1":
            lines[k] = lines[k][: len(lines[k]) // 2]
        elif server == "smtp1":
            lines.insert(k, b"\x00" * 24 + b"\xff\xfe\x8a junk \xc3(")
    return b"\n".join(lines) + (b"\n" if lines else b"")
