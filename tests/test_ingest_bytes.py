"""Multi-byte text anywhere on a line never moves a cut: the parsers find positions and cut at them
in the same unit (bytes), whatever unit this polars's ``str.find`` counts in (bytes before 2.2,
characters from 2.2). A mix-up cuts one byte short or long per multi-byte character before the
cut: a field loses or gains letters (``LOGIN`` read as ``GIN``), or the batch fails on text cut
inside a character."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import IngestConfig
from detector.schema import C
from tests.ingest_helpers import parse_lines

WIDE = "éü€漢𝔘"
"""One character of each UTF-8 width above one byte (2, 2, 3, 3, 4), each its own lower case."""
WORD = st.text(alphabet=st.sampled_from([*"az09", *WIDE]), min_size=1, max_size=8)
PF = "Nov 23 03:14:15 mx1 postfix/submission/smtpd[4711]"


def _parsed(lines: list[str]) -> list[dict]:
    """The lines through the envelope and the polars parsers (no kernel), one row each."""
    out, fx = parse_lines(lines, IngestConfig(kernel="off"), fast=False)
    assert not fx.quarantine and not fx.noise
    rows = out.sort(C.LINE_NUMBER).to_dicts()
    assert [r[C.LINE_NUMBER] for r in rows] == list(range(1, len(lines) + 1))
    return rows


def _lines(user: str, host: str, client: str, helo: str) -> list[tuple[str, dict]]:
    """(line, fields it must be read with): the multi-byte text before each field the parsers cut."""
    return [
        (
            f"Nov 23 03:14:15 {host} dovecot: imap-login: Login: user=<{user}>, method=PLAIN, "
            "rip=203.0.113.7, lip=192.0.2.10, mpid=812, TLS, session=<AbCd+/Ef12>",
            {C.HOST: host, C.ACCOUNT: user, C.SOURCE_IP: "203.0.113.7", C.AUTH_METHOD: "PLAIN"},
        ),
        (
            f"2026-11-23T03:14:15Z {host} dovecot[7]: imap-login: Login: user=<{user}>, method=PLAIN, "
            "rip=203.0.113.7, lip=192.0.2.10, session=<x>",
            {C.HOST: host, C.ACCOUNT: user, C.SESSION_ID: "x"},
        ),
        (
            f"Nov 23 03:14:15 mx1 dovecot: imap({user})<812><AbCd+/Ef12>: Logged out in=120 out=5400",
            {C.ACCOUNT: user, C.SESSION_ID: "AbCd+/Ef12", C.REASON: "Logged out"},
        ),
        (
            f"2026-11-23 03:14:15 imap({user})<1><s>: Info: Disconnected: Logged out in=1 out=2",
            {C.HOST: None, C.ACCOUNT: user, C.SESSION_ID: "s", C.REASON: "Disconnected"},
        ),
        (
            f"Nov 23 03:14:15 mx1 dovecot: auth-worker(812): sql({user},203.0.113.7,<s1>): Password mismatch",
            {C.ACCOUNT: user, C.SOURCE_IP: "203.0.113.7", C.REASON: "Password mismatch"},
        ),
        (
            f"{PF}: warning: {client}[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, "
            f"sasl_username={user}",
            {C.ACCOUNT: user, C.SOURCE_IP: "203.0.113.7", C.AUTH_METHOD: "LOGIN"},
        ),
        (
            f"{PF}: warning: {client}[203.0.113.7]: SASL LOGIN authentication aborted",
            {C.SOURCE_IP: "203.0.113.7", C.AUTH_METHOD: "LOGIN", C.REASON: "authentication aborted"},
        ),
        (
            f"{PF}: 1E28ACDAB8: client={client}[198.51.100.4], sasl_method=PLAIN, sasl_username={user}",
            {
                C.ACCOUNT: user,
                C.SOURCE_IP: "198.51.100.4",
                C.AUTH_METHOD: "PLAIN",
                C.SESSION_ID: "1E28ACDAB8",
            },
        ),
        (
            f"Nov 23 03:14:15 mx1 exim[12]: plain_srv authenticator failed for ({helo}) [198.51.100.23]:40122: "
            f"535 Incorrect authentication data (set_id={user})",
            {C.ACCOUNT: user, C.SOURCE_IP: "198.51.100.23", C.SOURCE_PORT: 40122, C.AUTH_METHOD: "PLAIN"},
        ),
    ]


def _check(user: str, host: str, client: str, helo: str) -> None:
    cases = _lines(user, host, client, helo)
    for (line, want), row in zip(cases, _parsed([line for line, _ in cases]), strict=True):
        assert {k: row[k] for k in want} == want, line


@pytest.mark.parametrize(
    ("user", "host", "client", "helo"),
    [
        ("ü€漢𝔘@é.example", "mx-é", "hôte-é", "hélo-€"),
        ("a@b", "mx1", "unknown", "x"),
        ("𝔘𝔘𝔘", "漢", "€€", "𝔘"),
    ],
    ids=["every-width", "ascii", "four-byte"],
)
def test_fields_after_multibyte_text(user, host, client, helo):
    _check(user, host, client, helo)


@settings(max_examples=25, deadline=None)
@given(user=WORD, host=WORD, client=WORD, helo=WORD)
def test_any_multibyte_text_before_a_field_leaves_it_whole(user, host, client, helo):
    _check(f"{user}@{host}.example", host, client, helo)
