"""Large, realistic syslogs for benchmarks (not test fixtures), one per profile (:data:`PROFILES`).

``mta``: what a small provider's mixed ``mail.log`` holds: IMAP/POP3 logins and session ends,
password guessing against Dovecot (two lines per failure: the ``auth-worker`` passdb line and the
``imap-login`` disconnect) and against Postfix submission (Dovecot SASL), authenticated
submissions with their qmgr line, and the usual delivery and connection noise (73 % of lines).

``imap``: what a large provider's IMAP/POP3 front end logs (Dovecot 2.3): 96 % authentication and
session lines (logins, logouts with byte counts, the two lines of each failed attempt, logins
that disconnect before authenticating), the rest start-up, delivery and cron noise.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _stamp(t: datetime) -> str:
    return f"{MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}"


class _Lines:
    """A log being written: lines gathered in ``buf`` go to the file in blocks of :data:`BLOCK`
    (:meth:`flush_full`) and at the end; ``written`` counts the lines already in the file."""

    BLOCK = 50000

    def __init__(self, path: Path) -> None:
        self.path = path
        self.buf: list[str] = []
        self.written = 0

    def __enter__(self) -> _Lines:
        self.file = open(self.path, "w", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush()
        self.file.close()

    def flush_full(self) -> None:
        if len(self.buf) >= self.BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.file.write("\n".join(self.buf) + "\n")
            self.written += len(self.buf)
            self.buf.clear()


def generate(
    path: Path, lines: int, seed: int = 7, start: datetime | None = None, profile: str = "mta"
) -> int:
    """Write about ``lines`` lines of ``profile`` to ``path``; returns the number written."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if profile == "imap":
        return _imap(path, lines, seed, start)
    rng = random.Random(seed)
    t0 = start or datetime(2026, 11, 20, tzinfo=UTC)
    users = [f"user{i}@example.org" for i in range(20000)]
    homes = [
        f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(5000)
    ]
    bots = [
        f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(300)
    ]
    v6 = [f"2001:db8:{i:x}::{rng.randrange(1, 65535):x}" for i in range(200)]
    step = 86400 * 3 / max(lines, 1)
    n = 0
    with _Lines(path) as out:
        buf = out.buf
        while out.written < lines:
            t = t0 + timedelta(seconds=n * step)
            n += 1
            s = _stamp(t)
            r = rng.random()
            sess = f"{rng.getrandbits(64):016x}"[:16]
            pid = rng.randrange(1000, 60000)
            if r < 0.16:
                u, ip = rng.choice(users), rng.choice(homes + v6[:20])
                buf.append(
                    f"{s} mx1 dovecot: imap-login: Login: user=<{u}>, method=PLAIN, rip={ip}, lip=192.0.2.10, "
                    f"mpid={pid}, TLS, session=<{sess}>"
                )
                buf.append(
                    f"{s} mx1 dovecot: imap({u})<{pid}><{sess}>: Disconnected: Logged out in={rng.randrange(50, 9000)} "
                    f"out={rng.randrange(500, 900000)} deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0"
                )
            elif r < 0.22:
                u, ip = rng.choice(users), rng.choice(homes)
                buf.append(
                    f"{s} mx1 dovecot: pop3-login: Login: user=<{u}>, method=PLAIN, rip={ip}, lip=192.0.2.10, "
                    f"mpid={pid}, TLS, session=<{sess}>"
                )
                k = rng.randrange(0, 9)
                size = k * rng.randrange(2000, 90000)
                buf.append(
                    f"{s} mx1 dovecot: pop3({u})<{pid}><{sess}>: Disconnected: Logged out top=0/0, retr={k}/{size}, "
                    f"del={k}/{k}, size={size}"
                )
            elif r < 0.42:
                u, ip = rng.choice(users), rng.choice(bots + v6)
                w = rng.randrange(1, 9)
                buf.append(
                    f"{s} mx1 dovecot: auth-worker({pid}): passwd-file({u},{ip},<{sess}>): Password mismatch"
                )
                buf.append(
                    f"{s} mx1 dovecot: imap-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in {w} secs): "
                    f"user=<{u}>, method=PLAIN, rip={ip}, lip=192.0.2.10, TLS, session=<{sess}>"
                )
            elif r < 0.50:
                ip = rng.choice(bots)
                u = f"admin{rng.randrange(50)}@example.org"
                buf.append(f"{s} mx1 postfix/submission/smtpd[{pid}]: connect from unknown[{ip}]")
                buf.append(f"{s} mx1 dovecot: auth: passwd-file({u},{ip}): unknown user")
                buf.append(
                    f"{s} mx1 postfix/submission/smtpd[{pid}]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
                )
                buf.append(
                    f"{s} mx1 postfix/submission/smtpd[{pid}]: lost connection after AUTH from unknown[{ip}]"
                )
                buf.append(
                    f"{s} mx1 postfix/submission/smtpd[{pid}]: disconnect from unknown[{ip}] ehlo=1 auth=0/1 commands=1/2"
                )
            elif r < 0.58:
                u, ip = rng.choice(users), rng.choice(homes)
                qid = f"{rng.getrandbits(40):010X}"
                buf.append(f"{s} mx1 postfix/submission/smtpd[{pid}]: connect from client.example.net[{ip}]")
                buf.append(
                    f"{s} mx1 postfix/submission/smtpd[{pid}]: {qid}: client=client.example.net[{ip}], sasl_method=PLAIN, sasl_username={u}"
                )
                buf.append(f"{s} mx1 postfix/cleanup[{pid + 1}]: {qid}: message-id=<{sess}@example.org>")
                buf.append(
                    f"{s} mx1 postfix/qmgr[812]: {qid}: from=<{u}>, size={rng.randrange(900, 4000000)}, nrcpt={rng.randrange(1, 6)} (queue active)"
                )
                buf.append(
                    f"{s} mx1 postfix/smtp[{pid + 2}]: {qid}: to=<someone@example.com>, relay=mx.example.com[198.51.100.20]:25, "
                    f"delay=0.4, delays=0.1/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
                )
                buf.append(f"{s} mx1 postfix/qmgr[812]: {qid}: removed")
                buf.append(
                    f"{s} mx1 postfix/submission/smtpd[{pid}]: disconnect from client.example.net[{ip}] ehlo=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=6"
                )
            elif r < 0.85:
                ip = rng.choice(bots + homes)
                qid = f"{rng.getrandbits(40):010X}"
                buf.append(f"{s} mx1 postfix/smtpd[{pid}]: connect from mail.example.net[{ip}]")
                buf.append(f"{s} mx1 postfix/smtpd[{pid}]: {qid}: client=mail.example.net[{ip}]")
                buf.append(
                    f"{s} mx1 postfix/qmgr[812]: {qid}: from=<news@example.net>, size=5120, nrcpt=1 (queue active)"
                )
                buf.append(
                    f"{s} mx1 dovecot: lmtp({rng.choice(users)})<{pid}><{sess}>: msgid=<{sess}@example.net>: saved mail to INBOX"
                )
                buf.append(
                    f"{s} mx1 postfix/smtpd[{pid}]: disconnect from mail.example.net[{ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
                )
            else:
                buf.append(
                    f"{s} mx1 CRON[{pid}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"
                )
            out.flush_full()
    return out.written


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _session(rng: random.Random) -> str:
    """A Dovecot 2.3 session id: 16 base64 characters."""
    return "".join(rng.choice(_B64) for _ in range(16))


def _imap(path: Path, lines: int, seed: int, start: datetime | None) -> int:
    """The ``imap`` profile: a Dovecot 2.3 IMAP/POP3 server's syslog.

    Per record (one or two lines): IMAP session 50 % (login + logout: ``Logged out in= out=``
    mostly, also ``Connection closed (IDLE ...)`` and ``Disconnected for inactivity``), POP3
    session 12 %, failed password 22 % (passdb line + ``-login`` line), unknown user 6 %, no
    authentication attempt 6 %, noise 4 % (delivery, cron, master). 8 % of clients on IPv6.
    """
    rng = random.Random(seed)
    t0 = start or datetime(2026, 11, 20, tzinfo=UTC)
    users = [f"user{i}@example.org" for i in range(50000)]
    homes = [
        f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(20000)
    ]
    bots = [
        f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(600)
    ]
    v6 = [f"2001:db8:{i:x}::{rng.randrange(1, 65535):x}" for i in range(400)]
    lip = "192.0.2.10"
    step = 86400 / max(lines, 1)
    n = 0
    with _Lines(path) as out:
        buf = out.buf
        while out.written < lines:
            s = _stamp(t0 + timedelta(seconds=n * step))
            n += 1
            r = rng.random()
            pid = rng.randrange(1000, 60000)
            sess = _session(rng)
            v6_client = rng.random() < 0.08
            if r < 0.62:
                pop = r >= 0.50
                svc = "pop3" if pop else "imap"
                u = rng.choice(users)
                ip = rng.choice(v6) if v6_client else rng.choice(homes)
                tls = ", TLS" if rng.random() < 0.93 else (", secured" if rng.random() < 0.5 else "")
                buf.append(
                    f"{s} imap1 dovecot: {svc}-login: Login: user=<{u}>, method=PLAIN, rip={ip}, lip={lip}, "
                    f"mpid={pid}{tls}, session=<{sess}>"
                )
                if pop:
                    k = rng.randrange(0, 9)
                    size = k * rng.randrange(2000, 90000)
                    buf.append(
                        f"{s} imap1 dovecot: pop3({u})<{pid}><{sess}>: Disconnected: Logged out top=0/0, "
                        f"retr={k}/{size}, del={k}/{k}, size={size + rng.randrange(0, 500000)}"
                    )
                    continue
                traffic = (
                    f"in={rng.randrange(50, 9000)} out={rng.randrange(500, 900000)} deleted=0 expunged=0 "
                    f"trashed=0 hdr_count=0 hdr_bytes=0 body_count={rng.randrange(0, 20)} body_bytes=0"
                )
                e = rng.random()
                if e < 0.80:
                    end = "Logged out"
                elif e < 0.95:
                    end = (
                        f"Disconnected: Connection closed (IDLE running for 0.001 + waiting input for "
                        f"{rng.randrange(1, 1800)}.001 secs, 2 B in + 10 B out, state=wait-input)"
                    )
                else:
                    end = "Disconnected for inactivity"
                buf.append(f"{s} imap1 dovecot: imap({u})<{pid}><{sess}>: {end} {traffic}")
            elif r < 0.90:
                unknown = r >= 0.84
                u = (
                    f"{rng.choice(['admin', 'info', 'test', 'sales'])}{rng.randrange(100)}@example.org"
                    if unknown
                    else rng.choice(users)
                )
                ip = rng.choice(v6) if v6_client else rng.choice(bots)
                svc = "pop3" if rng.random() < 0.2 else "imap"
                reason = "unknown user" if unknown else "Password mismatch"
                buf.append(f"{s} imap1 dovecot: auth-worker({pid}): sql({u},{ip},<{sess}>): {reason}")
                w = rng.randrange(1, 9)
                buf.append(
                    f"{s} imap1 dovecot: {svc}-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in {w} secs): "
                    f"user=<{u}>, method=PLAIN, rip={ip}, lip={lip}, TLS, session=<{sess}>"
                )
            elif r < 0.96:
                ip = rng.choice(bots + homes)
                buf.append(
                    f"{s} imap1 dovecot: imap-login: Disconnected: Connection closed (no auth attempts in "
                    f"{rng.randrange(0, 30)} secs): user=<>, rip={ip}, lip={lip}, TLS handshaking: "
                    f"SSL_accept() failed: Connection reset by peer, session=<{sess}>"
                )
            elif r < 0.98:
                buf.append(
                    f"{s} imap1 dovecot: lmtp({rng.choice(users)})<{pid}><{sess}>: msgid=<{sess}@example.net>: saved mail to INBOX"
                )
            else:
                buf.append(
                    f"{s} imap1 CRON[{pid}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"
                )
            out.flush_full()
    return out.written


PROFILES = {
    "mta": "mixed Dovecot + Postfix mail.log (73 % delivery noise)",
    "imap": "Dovecot 2.3 IMAP/POP3 front end (96 % auth and session lines)",
}
"""Profile name -> what it models; :func:`generate` writes any of them."""
