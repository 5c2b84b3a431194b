"""The compiled kernel is a strict fast path: what it takes, it reads exactly as the polars parsers
do (frame for frame), and everything else it leaves to them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector.config import IngestConfig, load
from detector.errors import ConfigError
from detector.ingest import ingest, kernel
from detector.schema import C
from tests.ingest_helpers import MTIME, parse_lines, write_log

pytestmark = pytest.mark.skipif(not kernel.available(), reason="numba is not installed")

ROOT = Path(__file__).resolve().parent.parent
S = "Nov 23 03:14:15 mx1 dovecot"
LOGIN = "imap-login: Login: user=<alice@example.org>, method=PLAIN, rip=203.0.113.7, lip=192.0.2.10, mpid=812, TLS, session=<AbCd+/Ef12>"
FAIL = "imap-login: Disconnected: Aborted login by logging out (auth failed, 3 attempts in 2 secs): user=<alice@example.org>, method=PLAIN, rip=203.0.113.7, lip=192.0.2.10, TLS, session=<AbCd+/Ef12>"
AUTH = "auth-worker(812): sql(alice@example.org,203.0.113.7,<AbCd+/Ef12>): Password mismatch"
LOGOUT = "imap(alice@example.org)<812><AbCd+/Ef12>: Logged out in=120 out=5400 deleted=0 expunged=0"
POP = "pop3(alice@example.org)<812><AbCd+/Ef12>: Disconnected: Logged out top=0/0, retr=2/4096, del=2/2, size=9000"

TAKEN = [
    f"{S}: {LOGIN}",
    f"{S}[7508]: {LOGIN}",
    f"{S}: Info: {LOGIN}",
    f"{S}: {LOGIN.replace(', TLS', ', secured')}",
    f"{S}: {LOGIN.replace(', TLS', '').replace(', mpid=812', '')}",
    f"{S}: {LOGIN.replace('alice', 'ALICE').replace('PLAIN', 'plain')}",
    f"{S}: {LOGIN.replace('imap-login', 'pop3-login')}",
    f"{S}: {LOGIN.replace('imap-login', 'submission-login')}",
    f"{S}: {LOGIN.replace('203.0.113.7', '2001:DB8:0:0::7')}",
    f"{S}: {LOGIN.replace('203.0.113.7', '::ffff:198.51.100.1')}",
    f"Feb 28 23:59:59 mx1 dovecot: {LOGIN}",
    f"Nov  3 03:14:15 mx1 dovecot: {LOGIN}",
    f"{S}: {FAIL}",
    f"{S}: {FAIL.replace('3 attempts', '1 attempts')}",
    f"{S}: imap-login: Disconnected (auth failed, 1 attempts in 6 secs): user=<a@b>, method=PLAIN, rip=1.1.1.1, lip=7.7.7.7, TLS, session=<x>",
    f"{S}: {AUTH}",
    f"{S}: {AUTH.replace('Password mismatch', 'unknown user')}",
    f"{S}: {AUTH.replace(',<AbCd+/Ef12>', '')}",
    f"{S}: auth: passwd-file(bob,198.51.100.9): unknown user",
    f"{S}: {LOGOUT}",
    f"{S}: {POP}",
    f"{S}: imap(a@b)<1><s>: Disconnected: Connection closed (IDLE running for 0.001 + waiting input for 29.001 secs, 2 B in + 10 B out, state=wait-input) in=1 out=2",
    f"{S}: imap(a@b)<1><s>: Disconnected for inactivity in=1 out=2 deleted=0",
    # noise kinds, counted only
    f"{S}: imap-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=1.2.3.4, lip=5.6.7.8, session=<x>",
    f"{S}: lmtp(alice@example.org)<812><AbCd>: msgid=<x@y>: saved mail to INBOX",
    f"{S}: master: Dovecot v2.3.21 starting up",
    f"{S}: imap(alice@example.org)<812><AbCd>: Disconnected: Connection closed",
]
"""Dovecot lines the kernel takes (and must read as the polars parsers do)."""

P = "Nov 23 03:14:15 mx1 postfix"
SUB = f"{P}/submission/smtpd[4711]"
SASL = f"{SUB}: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
CLIENT = f"{SUB}: 1E28ACDAB8: client=client.example.net[198.51.100.4], sasl_method=PLAIN, sasl_username=Alice@example.org"
QMGR = f"{P}/qmgr[812]: 1E28ACDAB8: from=<alice@example.org>, size=367646, nrcpt=5 (queue active)"
DISC = f"{SUB}: disconnect from unknown[203.0.113.7] ehlo=1 auth=0/1 commands=1/2"
POSTFIX = [
    f"{P}/smtpd[812]: connect from unknown[203.0.113.7]",
    f"{P}/smtpd[812]: connect from a.b[2001:db8::7]",
    f"{P}/smtpd[812]: disconnect from mail.example.net[203.0.113.7] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
    f"{SUB}: disconnect from client.example.net[198.51.100.4] ehlo=1 auth=1 mail=1 quit=1 commands=4",
    f"{SUB}: disconnect from unknown[203.0.113.7]",
    DISC,
    DISC.replace("auth=0/1", "auth=0/12"),
    DISC.replace("203.0.113.7", "2001:DB8::0:7"),
    SASL,
    SASL.replace("UGFzc3dvcmQ6", "VXNlcm5hbWU6"),
    SASL.replace("UGFzc3dvcmQ6", "authentication failure"),
    SASL.replace("UGFzc3dvcmQ6", "Connection lost to authentication server"),
    SASL.replace(": UGFzc3dvcmQ6", ": "),
    SASL + ", sasl_username=Bob@Example.org",
    SASL.replace("submission/smtpd", "smtpd").replace("LOGIN", "plain"),
    SASL.replace("postfix/submission", "postfix-in/smtps").replace("unknown", "h-1.example.net"),
    f"{SUB}: warning: unknown[203.0.113.7]: SASL LOGIN authentication aborted",
    f"{SUB}: lost connection after AUTH from unknown[203.0.113.7]",
    f"{SUB}: timeout after AUTH from unknown[203.0.113.7]",
    f"{SUB}: too many errors after AUTH from unknown[2001:db8::1]",
    f"{SUB}: improper command pipelining after AUTH from x.example[203.0.113.7]",
    f"{SUB}: lost connection after DATA from unknown[203.0.113.7]",
    CLIENT,
    f"{P}/smtpd[812]: 7D8A4F31F6: client=mail.example.net[203.0.113.7]",
    f"{P}/smtpd[812]: 7D8A4F31F6: client=mail.example.net[203.0.113.7], orig_queue_id=X",
    f"{P}/smtpd[812]: warning: hostname x.example does not resolve to address 203.0.113.7",
    QMGR,
    QMGR.replace("alice@example.org", ""),
    QMGR.replace("alice@example.org", "x, size=1, nrcpt=1 (queue active)"),
    QMGR.replace("active", "deferred"),
    f"{P}/qmgr[812]: 1E28ACDAB8: removed",
    f"{P}/cleanup[48387]: 1E28ACDAB8: message-id=<54fde43577be7088@example.org>",
    f"{P}/smtp[48388]: 1E28ACDAB8: to=<someone@example.com>, relay=mx.example.com[198.51.100.20]:25, delay=0.4, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
    f"{P}/anvil[99]: statistics: max connection rate 1/60s for (smtp:203.0.113.7) at Nov 23 03:10:00",
    f"{P}/pickup[7]: 1E28ACDAB8: uid=0 from=<root>",
    f"{P}-in/local[7]: 1E28ACDAB8: to=<a@b>, status=sent",
    f"{P}/postqueue[7]: fatal: whatever",
    f"{P}[7]: starting the Postfix mail system",
]
"""Postfix lines the kernel takes."""
TAKEN += POSTFIX
ISO = [
    f"2026-11-23T03:14:15.123456+01:00 mx1 dovecot: {LOGIN}",
    f"2026-11-23T03:14:15.1-01:30 mx1 dovecot: {LOGIN}",
    f"2026-11-23T03:14:15Z mx1 dovecot: {AUTH}",
    f"2026-11-23T03:14:15+0100 mx1 dovecot: {LOGOUT}",
    f"2024-02-29T23:59:59.000001+00:00 mx1 dovecot: {LOGIN}",
    f"2026-01-01T00:30:00+02:00 mx1 dovecot: {LOGIN}",
    f"2026-11-23T03:14:15.123+01:00 mx1 {SASL.split(' mx1 ', 1)[1]}",
    f"2026-11-23T03:14:15.123+01:00 mx1 {DISC.split(' mx1 ', 1)[1]}",
    f"2026-11-23T03:14:15.123+01:00 mx1 {QMGR.split(' mx1 ', 1)[1]}",
]
"""ISO 8601 (RFC 3339) envelopes with their offset."""
TAKEN += ISO

LEFT = [
    # other envelopes, programs and Dovecot shapes: the polars parsers' business
    f"<34>1 2026-11-23T03:14:15.123Z mx1 dovecot 812 - - {LOGIN}",
    "2026-11-23T03:14:15.123456789+01:00 mx1 dovecot: " + LOGIN,
    "2026-11-23T03:14:15,123456+01:00 mx1 dovecot: " + LOGIN,
    "2026-11-23T03:14:15.123456 mx1 dovecot: " + LOGIN,
    "2026-11-23T03:14:15 mx1 dovecot: " + LOGIN,
    "2026-13-23T03:14:15Z mx1 dovecot: " + LOGIN,
    "2026-02-29T03:14:15Z mx1 dovecot: " + LOGIN,
    "2026-11-23T24:14:15Z mx1 dovecot: " + LOGIN,
    "2026-11-23T03:14:60Z mx1 dovecot: " + LOGIN,
    "2026-11-23T03:14:15+24:00 mx1 dovecot: " + LOGIN,
    "2026-11-23T03:14:15+01 mx1 dovecot: " + LOGIN,
    "2026-11-23T03:14:15.Z mx1 dovecot: " + LOGIN,
    "2026-11-23t03:14:15z mx1 dovecot: " + LOGIN,
    "<38>2026-11-23T03:14:15Z mx1 dovecot: " + LOGIN,
    f"2026-11-23 03:14:15 {LOGIN}",
    "Nov 23 03:14:15 mx1 CRON[1]: (root) CMD (true)",
    f"{S}: {LOGIN.replace('203.0.113.7', '1:::2')}",
    f"{S}: {LOGIN.replace('203.0.113.7', '2001:db8::1.2.3.999')}",
    f"Nov 23 03:14:15.123 mx1 dovecot: {LOGIN}",
    f"<38>Nov 23 03:14:15 mx1 dovecot: {LOGIN}",
    f"Nov 23 03:14:15 dovecot: {LOGIN}",
    f"{S}: Warning: {LOGIN}",
    f"{S}: imap-login: Warning: Login: user=<a@b>, method=PLAIN, rip=1.2.3.4, lip=5.6.7.8, session=<x>",
    f"{S}: {AUTH.replace('Password mismatch', 'Password mismatch (given password: hunter2)')}",
    f"{S}: {AUTH.replace('Password mismatch', 'pam_authenticate() failed: Authentication failure')}",
    f"{S}: auth-worker(1): conn unix:auth-worker (pid=1,uid=2): auth-worker<1>: sql(a@b,1.2.3.4,<s>): Password mismatch",
    f"{S}: imap-login: Disconnected (tried to use disallowed plaintext auth): user=<>, rip=1.2.3.4, lip=5.6.7.8, session=<x>",
    f"{S}: imap-login: proxy(a@b): Login failed to 192.0.2.10:143: Authentication failed.: user=<a@b>, method=PLAIN, rip=1.2.3.4, lip=5.6.7.8, session=<x>",
    f"{S}: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=a rhost=1.2.3.4",
    f"{S}: {POP.replace('size=9000', 'size= 9000')}",
    f"{S}: {LOGIN.replace('rip=203.0.113.7', 'rip=203.0.113.07')}",
    f"{S}: {LOGIN.replace('rip=203.0.113.7', 'rip=203.0.113.256')}",
    f"{S}: {LOGIN.replace('rip=203.0.113.7', 'rip=')}",
    f"{S}: {LOGIN.replace('rip=203.0.113.7', 'rip=[203.0.113.7]')}",
    f"{S}: {LOGIN}, extra=1",
    f"{S}: {LOGIN.replace('alice@example.org', '')}",
    f"Feb 29 23:59:59 mx1 dovecot: {LOGIN}",  # 2026 is no leap year
    f"Feb 30 23:59:59 mx1 dovecot: {LOGIN}",
    f"Foo 23 03:14:15 mx1 dovecot: {LOGIN}",
    f"Nov 23 24:14:15 mx1 dovecot: {LOGIN}",
    f"Nov 23 03:14:15 mx1 dovecot2: {LOGIN}",
    f"Nov 23 03:14:15 mx1 dovecot[x]: {LOGIN}",
    # user names an attacker typed: quoting, a second field, separators, non-ASCII, controls
    f"{S}: {LOGIN.replace('alice@example.org', 'a>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, session=<z')}",
    f"{S}: {LOGIN.replace('alice@example.org', 'a, rip=6.6.6.6')}",
    f"{S}: {LOGIN.replace('alice@example.org', 'a rip=6.6.6.6')}",
    f"{S}: {LOGIN.replace('alice@example.org', 'ålice@example.org')}",
    f"{S}: " + LOGIN.replace("alice@example.org", "a\tb"),
    f"{S}: {LOGIN.replace('alice@example.org', '=cmd|calc')}",
    f"{S}: {AUTH.replace('alice@example.org', 'a,6.6.6.6): unknown user (x')}",
    f"{S}: {LOGOUT.replace('alice@example.org', 'a) in=1 out=2 (b')}",
    f"{S}: {LOGOUT.replace('alice@example.org', 'a)<1><s>: Logged out in=9 out=9 (')}",
    # Postfix: other shapes, ports, markers where the kernel does not read them, postscreen
    DISC.replace("auth=0/1", "auth=0"),
    DISC.replace("auth=0/1", "auth=0/0"),
    DISC.replace("auth=0/1", "auth=00/1"),
    DISC.replace("auth=0/1", "auth=0/1 auth=0/1"),
    DISC.replace("[203.0.113.7]", "[203.0.113.7]:4711"),
    DISC.replace("[203.0.113.7]", "[1:::2]"),
    SASL.replace("[203.0.113.7]", "[203.0.113.7]:4711"),
    SASL.replace("UGFzc3dvcmQ6", "generic failure"),
    SASL + ", sasl_username=",
    SASL + ", sasl_username=a b",
    SASL + ", sasl_username=a, sasl_username=b",
    SASL.replace("unknown", "un[known"),
    SASL.replace("203.0.113.7", "203.0.113.07"),
    CLIENT.replace("Alice@example.org", "a, sasl_sender=b"),
    CLIENT + ", orig_client=x",
    CLIENT.replace("sasl_method=PLAIN, ", ""),
    QMGR.replace("nrcpt=5", "nrcpt=99999999999"),
    QMGR.replace(" (queue active)", ""),
    QMGR.replace("1E28ACDAB8", "1E28-ACDAB8"),
    f"{P}/smtpd[812]: NOQUEUE: reject: RCPT from unknown[203.0.113.7]: 554 5.7.1 Relay access denied",
    f"{P}/smtpd[812]: warning: SASL authentication failure: Password verification failed",
    f"{P}/smtp[9]: warning: SASL authentication failed; server mx.example[192.0.2.1] said: 535",
    f"{P}/cleanup[9]: 1E28ACDAB8: message-id=<SASL@example.org>",
    f"{P}/postscreen[9]: CONNECT from [203.0.113.7]:4711 to [192.0.2.1]:25",
    f"{P}/smtpd[0812]: connect from unknown[203.0.113.7]",
    f"{P}/smtpd: connect from unknown[203.0.113.7]",
    f"{P}/SMTPD[812]: connect from unknown[203.0.113.7]",
    f"{P}/smtpd[812] connect from unknown[203.0.113.7]",
]
"""Lines the kernel leaves to the polars parsers."""


def _split(lines: list[str]) -> tuple[kernel.Taken, pl.DataFrame]:
    batch = pl.DataFrame(
        {C.SOURCE_FILE: ["x"] * len(lines), C.LINE_NUMBER: list(range(1, len(lines) + 1)), C.RAW: lines},
        schema={C.SOURCE_FILE: pl.String, C.LINE_NUMBER: pl.Int64, C.RAW: pl.String},
    )
    return kernel.split(batch, timezone="UTC", reference=MTIME, private=("_stage", "_qid", "_smtpd"))


def _both(tmp_path: Path, paths: list[str], **cfg) -> None:
    """Ingest ``paths`` with the kernel off and on: identical events, quarantine, noise, counts."""
    out = []
    for mode in ("off", "on"):
        r = ingest(paths, IngestConfig(kernel=mode, **cfg), tmp_path / mode)
        out.append(
            (
                r.events.collect().sort(C.SOURCE_FILE, C.LINE_NUMBER),
                r.quarantine.sort(C.SOURCE_FILE, C.LINE_NUMBER),
                r.noise,
                (r.lines_read, r.claimed, r.quarantined),
            )
        )
    (ev0, q0, n0, c0), (ev1, q1, n1, c1) = out
    assert_frame_equal(ev0, ev1)
    assert_frame_equal(q0, q1)
    assert n0 == n1
    assert c0 == c1


@pytest.mark.parametrize("line", TAKEN)
def test_taken_lines_read_as_the_parsers_do(tmp_path, line):
    taken, rest = _split([line])
    assert taken.lines == 1 and rest.is_empty()
    _both(tmp_path, [str(write_log(tmp_path / "mail.log", [line]))])


@pytest.mark.parametrize("line", LEFT)
def test_other_lines_are_left_to_the_parsers(tmp_path, line):
    taken, rest = _split([line])
    assert taken.lines == 0 and len(rest) == 1
    _both(tmp_path, [str(write_log(tmp_path / "mail.log", [line, f"{S}: {LOGIN}"]))])


def test_rest_keeps_its_order_and_columns():
    lines = [LEFT[3], TAKEN[0], LEFT[4], f"{S}: imap(a@b)<8><AbCd>: Disconnected: Connection closed", LEFT[0]]
    taken, rest = _split(lines)
    assert taken.lines == 2 and taken.events.height == 1
    assert rest[C.LINE_NUMBER].to_list() == [1, 3, 5]
    assert taken.noise == {"noise:dovecot_mail": 1}


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Paris", "America/New_York"])
def test_time_zones_and_the_skipped_hour(tmp_path, timezone):
    # 02:30 on 29 March does not exist in Paris: the envelope quarantines it, so must the kernel
    lines = [f"{d} mx1 dovecot: {LOGIN}" for d in ("Mar 29 02:30:00", "Mar 29 03:30:00", "Oct 25 02:30:00")]
    lines.append(f"Mar 29 02:30:00 mx1 dovecot: {LOGOUT}")
    _both(tmp_path, [str(write_log(tmp_path / "mail.log", lines))], timezone=timezone)


def test_year_inferred_across_new_year(tmp_path):
    lines = [f"Dec 31 23:59:59 mx1 dovecot: {LOGIN}", f"Jan  1 00:00:01 mx1 dovecot: {LOGOUT}"]
    _both(tmp_path, [str(write_log(tmp_path / "mail.log", lines))])


def test_auto_takes_inputs_that_are_mostly_dovecot_or_postfix():
    def first(dovecot: int, other: int, postfix: int = 0) -> pl.DataFrame:
        lines = (
            [f"{S}: {LOGIN}"] * dovecot
            + ["Nov 23 03:14:15 mx1 CRON[1]: (root) CMD (true)"] * other
            + [POSTFIX[0]] * postfix
        )
        return pl.DataFrame({C.RAW: lines})

    assert kernel.wanted("auto", first(6, 4))
    assert kernel.wanted("auto", first(6, 4), kernel.AUTO_MIN_BYTES)
    assert not kernel.wanted("auto", first(6, 4), kernel.AUTO_MIN_BYTES - 1)
    assert kernel.wanted("on", first(6, 4), 10)
    assert not kernel.wanted("auto", first(3, 7))
    assert kernel.wanted("auto", first(3, 4, 3))
    assert kernel.wanted("auto", first(0, 4, 6))
    assert kernel.wanted("on", first(0, 7))
    assert not kernel.wanted("off", first(7, 0))


def test_kind_numbers_agree_with_the_compiled_code():
    from detector.ingest import _kernel_impl as impl

    for name in ("LOGIN_OK", "LOGOUT", "PF_CLIENT", "PF_QMGR", "LAST_ROW", "F_SMTPD", "I_REASON"):
        assert getattr(kernel, name) == getattr(impl, name), name
    assert kernel.NOISE_KINDS[impl.NOISE_OTHER] == "noise:dovecot_other"
    assert kernel.NOISE_KINDS[impl.PN_CONNECT] == "noise:connect"
    assert kernel.NOISE_KINDS[impl.PN_AGENT] == "noise:postfix_qmgr"
    assert kernel.AFTER_AUTH == impl.AFTER_AUTH
    assert kernel.REASONS[impl.R_TEMPFAIL] == "Connection lost to authentication server"


def test_kernel_modes():
    """A fixed year no longer turns the kernel off: tests/test_ingest_fixed_year.py."""
    assert not kernel.enabled("off")
    assert kernel.enabled("on")


def test_unknown_mode_is_a_config_error(tmp_path):
    cfg = tmp_path / "detector.toml"
    cfg.write_text('[ingest]\nkernel = "fast"\n')
    with pytest.raises(ConfigError, match="kernel"):
        load(cfg)


HOSTILE = st.lists(
    st.sampled_from(
        [
            *"aZ09._@+-,=<>()[]: /\\|'\"\t%;{}$",
            *("rip=", ", ", "å", "\u202e", "TLS", "SASL", " auth=0/1", ", sasl_username=", ": client="),
            *(", size=1, nrcpt=2 (queue active)", "]: SASL ", " authentication failed: ", "1.2.3.4"),
        ]
    ),
    max_size=12,
).map("".join)


def _parsed(lines: list[str], fast: bool) -> tuple[pl.DataFrame, dict, list[pl.DataFrame], int]:
    """One batch through the parsing step with the kernel or without (what the kernel changes;
    correlation and writing then run on the same rows)."""
    out, fx = parse_lines(lines, IngestConfig(), fast=fast)
    return out.sort(C.LINE_NUMBER), dict(fx.noise), fx.quarantine, fx.claimed


@settings(max_examples=80, deadline=None)
@given(user=HOSTILE, session=HOSTILE, reason=st.sampled_from(["Password mismatch", "unknown user", "x"]))
def test_hostile_user_names_never_read_differently(user, session, reason):
    """Whatever an attacker puts in a user name or session, the kernel's rows equal the parsers'."""
    lines = [
        f"{S}: {LOGIN.replace('alice@example.org', user).replace('AbCd+/Ef12', session)}",
        f"{S}: {FAIL.replace('alice@example.org', user)}",
        f"{S}: {AUTH.replace('alice@example.org', user).replace('Password mismatch', reason)}",
        f"{S}: {LOGOUT.replace('alice@example.org', user).replace('AbCd+/Ef12', session)}",
        f"{S}: {POP.replace('alice@example.org', user)}",
    ]
    (a, na, qa, ca), (b, nb, qb, cb) = _parsed(lines, False), _parsed(lines, True)
    assert_frame_equal(a, b)
    assert (na, ca) == (nb, cb)
    assert [q.sort(C.LINE_NUMBER).to_dicts() for q in qa] == [q.sort(C.LINE_NUMBER).to_dicts() for q in qb]


def _v6_forms(value: int) -> list[str]:
    """Ways to write one IPv6 address: Python's own, exploded, upper case, leading zeros, every
    `::` placement (canonical or not), IPv4-mapped and dotted tails."""
    import ipaddress

    ip = ipaddress.IPv6Address(value)
    groups = ip.exploded.split(":")
    short = [g.lstrip("0") or "0" for g in groups]
    forms = {str(ip), ip.exploded, str(ip).upper(), ":".join(short), ":".join(short).upper()}
    for start in range(8):
        for end in range(start + 1, 9):
            if all(g == "0" for g in short[start:end]):
                forms.add(":".join(short[:start]) + "::" + ":".join(short[end:]))
    forms.add("0" + str(ip) if str(ip)[0] != ":" else str(ip))
    forms.add(f"::ffff:{ipaddress.IPv4Address(value & 0xFFFFFFFF)}")
    forms.add(f"{':'.join(short[:6])}:{ipaddress.IPv4Address(value & 0xFFFFFFFF)}")
    return sorted(forms)


def _python_writes_it(text: str) -> bool:
    import ipaddress

    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return ip.version == 6 and ip.ipv4_mapped is None and str(ip) == text


_GROUP = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xDB8, 0x2001, 0xA, 0x10])


@settings(max_examples=300, deadline=None)
@given(
    groups=st.lists(_GROUP, min_size=8, max_size=8), extra=st.text("0123456789abcdefABCDEF:.", max_size=12)
)
def test_plain_ipv6_check_agrees_with_python(groups, extra):
    """The compiled check says "already canonical" only where Python writes the address exactly so
    (then canonicalising could change nothing), for zero runs of every length and position."""
    import numpy as np

    from detector.ingest import _kernel_impl

    value = int("".join(f"{g:04x}" for g in groups), 16)
    texts = [*_v6_forms(value), extra, extra + "::", "::" + extra]
    data = np.frombuffer("".join(texts).encode(), np.uint8)
    spans = np.full((len(texts), 16), -1, np.int64)
    at = 0
    for i, t in enumerate(texts):
        spans[i, 2 * kernel.F_SOURCE_IP : 2 * kernel.F_SOURCE_IP + 2] = (at, at + len(t))
        at += len(t)
    out = np.empty(len(texts), np.uint8)
    _kernel_impl.plain_v6(data, spans, np.arange(len(texts), dtype=np.int64), kernel.F_SOURCE_IP, out)
    for t, plain in zip(texts, out, strict=True):
        if ":" in t:
            assert bool(plain) == _python_writes_it(t), t


@settings(max_examples=40, deadline=None)
@given(groups=st.lists(_GROUP, min_size=8, max_size=8))
def test_ipv6_addresses_read_as_the_parsers_do(groups):
    """Every way of writing an IPv6 client or server address gives the parsers' rows."""
    value = int("".join(f"{g:04x}" for g in groups), 16)
    lines = []
    for form in _v6_forms(value):
        lines.append(f"{S}: {LOGIN.replace('203.0.113.7', form)}")
        lines.append(f"{S}: {LOGIN.replace('192.0.2.10', form)}")
        lines.append(f"{S}: {AUTH.replace('203.0.113.7', form)}")
    (a, na, qa, ca), (b, nb, qb, cb) = _parsed(lines, False), _parsed(lines, True)
    assert_frame_equal(a, b)
    assert (na, ca) == (nb, cb)
    assert [q.sort(C.LINE_NUMBER).to_dicts() for q in qa] == [q.sort(C.LINE_NUMBER).to_dicts() for q in qb]


@settings(max_examples=80, deadline=None)
@given(name=HOSTILE, host=HOSTILE, method=HOSTILE, tail=HOSTILE)
def test_hostile_postfix_fields_never_read_differently(name, host, method, tail):
    """Postfix's client-written fields (SASL user name and method, the client's name from its
    PTR record, a sender address, text after a daemon's words) never make the kernel read a line
    differently from the parser."""
    lines = [
        SASL.replace("unknown", host or "unknown") + f", sasl_username={name}",
        SASL.replace("LOGIN", method),
        SASL.replace("UGFzc3dvcmQ6", tail),
        CLIENT.replace("Alice@example.org", name).replace("PLAIN", method),
        CLIENT.replace("client.example.net", host),
        QMGR.replace("alice@example.org", name + tail),
        DISC.replace("unknown", host) + tail,
        DISC.replace("ehlo=1", tail),
        f"{SUB}: lost connection after AUTH from {host}[203.0.113.7]{tail}",
        f"{SUB}: connect from {host}[203.0.113.7]{tail}",
        f"{P}/cleanup[9]: 1E28ACDAB8: message-id=<{name}{tail}>",
        f"{SUB}: {tail}{name}",
    ]
    (a, na, qa, ca), (b, nb, qb, cb) = _parsed(lines, False), _parsed(lines, True)
    assert_frame_equal(a, b)
    assert (na, ca) == (nb, cb)
    assert [q.sort(C.LINE_NUMBER).to_dicts() for q in qa] == [q.sort(C.LINE_NUMBER).to_dicts() for q in qb]


@pytest.mark.slow
def test_bench_profiles_identical(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from loggen import PROFILES, generate

    paths = []
    for profile in PROFILES:
        path = tmp_path / f"{profile}.log"
        generate(path, 6000, seed=11, profile=profile)
        paths.append(str(path))
    for p in paths:
        _both(tmp_path / Path(p).stem, [p], chunk_bytes=65536)


@pytest.mark.slow
def test_samples_identical(tmp_path):
    _both(tmp_path, [str(ROOT / "data" / "samples" / "logs")])


CORPORA = ROOT.parent / "shared" / "corpora"


@pytest.mark.skipif(not CORPORA.is_dir(), reason="no shared corpora beside the repository")
def test_corpora_identical(tmp_path):
    lines = []
    for path in sorted(CORPORA.rglob("*.jsonl")):
        for row in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                line = json.loads(row).get("line")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(line, str) and "\n" not in line and "\r" not in line:
                lines.append(line)
    assert lines
    _both(tmp_path, [str(write_log(tmp_path / "corpora.log", lines))])


def test_cache_dir_for_a_service_user(monkeypatch, tmp_path):
    monkeypatch.delenv(kernel.CACHE_ENV, raising=False)
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "svc"))
    assert kernel.cache_dir() == tmp_path / "svc" / "numba"
    monkeypatch.delenv("CACHE_DIRECTORY")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("XDG_CACHE_HOME", str(ro))
    monkeypatch.setattr(kernel.os, "access", lambda p, mode: not str(p).startswith(str(ro)))
    assert not str(kernel.cache_dir()).startswith(str(ro))
    monkeypatch.setenv(kernel.CACHE_ENV, str(tmp_path / "given"))
    assert kernel.cache_dir() == tmp_path / "given"


def test_cache_dir_someone_else_could_write_is_never_used(monkeypatch, tmp_path):
    """numba's cache index is a pickle: a directory another user made or may write is refused."""
    monkeypatch.delenv(kernel.CACHE_ENV, raising=False)
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    shared = tmp_path / "shared"
    (shared / "detector" / "numba").mkdir(parents=True)
    (shared / "detector" / "numba").chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    assert not str(kernel.cache_dir()).startswith(str(shared))
    (shared / "detector" / "numba").chmod(0o755)
    assert kernel.cache_dir() == shared / "detector" / "numba"
    monkeypatch.setattr(kernel.os, "getuid", lambda: 4242)  # the directory is now someone else's
    assert not str(kernel.cache_dir()).startswith(str(shared))


def test_rows_cost_memory_by_their_fields_not_their_offsets():
    """A row without an address (Postfix's session boundary) takes no bytes for it."""
    import tracemalloc

    lines = [f"{P}/smtpd[812]: disconnect from mail.example.net[203.0.113.7] ehlo=1 quit=1 commands=2"] * 4000
    _split(lines[:1])
    tracemalloc.start()
    taken, _ = _split(lines)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert taken.events.height == 4000
    assert peak < 32 * 2**20


PROBE = """
import os, sys
from detector.ingest import kernel
kernel.warm()
from detector.ingest import _kernel_impl as k
print(sum(k.scan.stats.cache_hits.values()), sum(k.scan.stats.cache_misses.values()), os.environ["NUMBA_CACHE_DIR"])
"""


def _probe(env: dict, user: str | None = None, python: str = sys.executable) -> tuple[int, int, str]:
    cmd = [python, "-c", PROBE]
    if user:
        cmd = [shutil.which("runuser") or "runuser", "-u", user, "--", *cmd]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
    hits, misses, where = done.stdout.split()
    return int(hits), int(misses), where


@pytest.mark.slow
def test_seeded_installation_loads_without_compiling(tmp_path):
    """A user with an empty cache (a service user, a Spark executor) copies the installation's
    compiled kernel instead of compiling it."""
    seed = tmp_path / "seed"
    assert kernel.write_seed(seed) > 0
    # only the current source's entry points (a cache keeps every earlier source's files too)
    names = {f.name.split(".")[1].split("-")[0] for f in seed.iterdir()}
    assert names == set(kernel.ENTRY_POINTS)
    assert len(list(seed.glob("*.nbi"))) == len(kernel.ENTRY_POINTS)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), kernel.SEED_ENV: str(seed)}
    hits, misses, where = _probe(env)
    assert (hits, misses) == (1, 0)
    assert where.startswith(str(home))
    assert any(Path(where).rglob("_kernel_impl.scan-*.nbi"))


@pytest.mark.slow
def test_seed_survives_a_source_rewritten_with_the_same_content(tmp_path):
    """numba keys its cache on the source's content: a checkout or merge that rewrites the file
    (newer modification time, same bytes) keeps the compiled files valid, and the seed copies them."""
    source = Path(kernel.__file__).with_name(f"{kernel.IMPL}.py")
    before = source.stat()
    later = before.st_mtime + 3600
    try:
        os.utime(source, (later, later))
        assert kernel.write_seed(tmp_path / "seed") > 0
    finally:
        os.utime(source, (before.st_atime, before.st_mtime))


SERVICE_PYTHON = os.environ.get("DETECTOR_SERVICE_PYTHON", sys.executable)
"""An interpreter (with detector installed) the ``nobody`` user can run: CI's own when it lives
where ``nobody`` can read it, else one named by ``$DETECTOR_SERVICE_PYTHON``."""


def _nobody_can_run(python: str) -> bool:
    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or runuser is None:
        return False
    done = subprocess.run(
        [runuser, "-u", "nobody", "--", python, "-c", "import detector.ingest.kernel"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        timeout=300,
    )
    return done.returncode == 0


@pytest.mark.slow
def test_service_user_with_a_read_only_installation():
    """systemd ``User=detector`` with ``CacheDirectory=detector``: run for real as ``nobody``, who
    cannot write into the installation nor into root's cache, with a fresh home and the unit's
    ``$CACHE_DIRECTORY``: the kernel comes from the installation's seed, compiled once by root."""
    if not _nobody_can_run(SERVICE_PYTHON):
        pytest.skip("needs root, runuser and an interpreter nobody can run ($DETECTOR_SERVICE_PYTHON)")
    top = Path(tempfile.mkdtemp(prefix="detector-svc-"))
    try:
        top.chmod(0o755)
        seed = top / "seed"
        made = subprocess.run(
            [SERVICE_PYTHON, "-m", "detector.ingest.kernel_seed", str(seed)], capture_output=True, timeout=900
        )
        assert made.returncode == 0, made.stderr
        cache, home = top / "cache", top / "home"
        for d in (cache, home):
            d.mkdir()
            os.chown(d, 65534, 65534)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "CACHE_DIRECTORY": str(cache),
            kernel.SEED_ENV: str(seed),
        }
        hits, misses, where = _probe(env, "nobody", SERVICE_PYTHON)
        assert (hits, misses) == (1, 0)
        assert where == str(cache / "numba")
        assert all(f.stat().st_uid == 65534 for f in Path(where).rglob("*"))
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_loading_the_kernel_leaves_scipy_linalg_alone():
    """numba's BLAS probe is skipped while the kernel loads (0.15 s of CPU per process), and
    ``scipy.linalg`` still imports afterwards (scikit-learn needs it in the same process)."""
    probe = (
        "import sys\n"
        "from detector.ingest import kernel\n"
        "kernel.warm()\n"
        "print('scipy.linalg' in sys.modules, kernel.BLAS in sys.modules)\n"
        "import scipy.linalg.cython_blas\n"
        "print(scipy.linalg.cython_blas.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=600, check=True
    )
    assert done.stdout.split() == ["False", "False", kernel.BLAS]


T = "Nov 23 03:14:16 mx1"
FOREIGN_UNCLAIMED = [
    f"{T} CRON[9333]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
    f"{T} sshd[812]: Failed password for root from 203.0.113.7 port 22 ssh2",
    f"{T} kernel: [12345.678] eth0: link up",
    f"{T} prog[1]: ",
    f"{T} prog[12: unclosed pid",
    f"{T} a[b]c[d]: two brackets",
    "2026-11-23T03:14:15.123456+01:00 mx1 CRON[1]: (root) CMD x",
]
FOREIGN_OTHERS = [
    # a parser may claim them (program, message pre-test, Dovecot without its tag), or the
    # envelope cuts them otherwise (level, no tag, a space or a bracket first, a bad date)
    f"{T} exim[812]: login authenticator failed for (x) [203.0.113.7]: 535 Incorrect authentication data (set_id=alice)",
    f"{T} myapp[1]: FAILED LOGIN for alice from 203.0.113.7",
    f"{T} anything[1]: badlogin: [203.0.113.7] plain alice SASL(-13): authentication failure",
    f"{T} imap-login: {LOGIN}",
    f"{T} {AUTH}",
    f"{T} foo: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=alice rhost=203.0.113.7",
    f"{T} sm-mta[812]: x: AUTH failure (LOGIN): authentication failure (-13) SASL(-13), relay=[203.0.113.7]",
    f"{T} nginx: 2026/11/23 03:14:16 [info] 8#8: *24785 client login failed: user=alice, client: 203.0.113.7",
    f"{T} ,exchange: x",
    f"{T} app: Info: something",
    f"{T} app[1]: Warning: something",
    f"{T} [812]: spaced",
    f"{T} two words: msg",
    f"{T} CRON[9333]:",
    "Feb 30 03:14:16 mx1 CRON[1]: (root) CMD x",
]


@pytest.mark.parametrize("line", FOREIGN_UNCLAIMED + FOREIGN_OTHERS)
def test_other_programs_lines_counted_as_the_parsers_do(tmp_path, line):
    """The kernel counts another program's line as ``noise:unclaimed`` only where the polars
    path would (same events, noise, quarantine and claimed lines)."""
    _both(tmp_path, [str(write_log(tmp_path / "mail.log", [line, f"{S}: {LOGIN}"]))])


def test_other_programs_lines_stay_in_the_kernel():
    from detector.ingest import _may_claim

    batch = pl.DataFrame(
        {
            C.SOURCE_FILE: "x",
            C.LINE_NUMBER: range(1, 4 + len(FOREIGN_OTHERS)),
            C.RAW: [*FOREIGN_UNCLAIMED[:3], *FOREIGN_OTHERS],
        },
        schema={C.SOURCE_FILE: pl.String, C.LINE_NUMBER: pl.Int64, C.RAW: pl.String},
    )
    taken, rest = kernel.split(batch, timezone="UTC", reference=MTIME, private=(), claimable=_may_claim())
    assert taken.noise == {"noise:unclaimed": 3}
    assert taken.lines == 0
    assert rest[C.RAW].to_list() == FOREIGN_OTHERS


FOREIGN_TEXT = st.lists(
    st.sampled_from(
        ["a", "Z", "[", "]", ":", ": ", " ", "1", "-", "(", "Info: ", "badlogin: ", "dovecot", ","]
    ),
    max_size=6,
).map("".join)


@settings(max_examples=60, deadline=None)
@given(tag=FOREIGN_TEXT, message=FOREIGN_TEXT)
def test_any_other_program_counted_as_the_parsers_do(tag, message):
    """Whatever the tag and message of another program's line, the kernel's count equals the parsers'."""
    lines = [f"{T} {tag}: {message}", f"{T} {tag}[7]: {message}", f"{S}: {LOGIN}"]
    (a, na, qa, ca), (b, nb, qb, cb) = _parsed(lines, False), _parsed(lines, True)
    assert_frame_equal(a, b)
    assert (na, ca) == (nb, cb)
    assert sorted(str(r) for q in qa for r in q.to_dicts()) == sorted(
        str(r) for q in qb for r in q.to_dicts()
    )
