"""Postfix anvil and postscreen lines carry the client but are not login attempts: each is
known noise by the daemon's own first words (``src/anvil/anvil.c``, ``src/postscreen/*.c``), so
they never count as an attempt, and the client-written text in them (pre-greeting bytes, HELO
name, commands, envelope addresses) cannot change that."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest_helpers import run
from tests.test_ingest_hostile import NAMES

T = "Nov 22 10:00:0"
A = "203.0.113.7"


def line(program: str, message: str, s: int = 1) -> str:
    return f"{T}{s} mx1 postfix/{program}: {message}"


ANVIL = [
    f"statistics: max connection rate 12/60s for (submission:{A}) at Nov 22 09:58:10",
    f"statistics: max connection count 4 for (smtps:{A}) at Nov 22 09:58:10",
    "statistics: max connection rate 3/60s for (smtp:2001:db8::7) at Nov 22 09:58:10",
    f"statistics: max auth rate 40/60s for (submission:{A}) at Nov 22 09:58:10",
    f"statistics: max message rate 2/60s for (smtp:{A}) at Nov 22 09:58:10",
    "statistics: max cache size 3 at Nov 22 09:58:10",
]

POSTSCREEN = [
    (f"CONNECT from [{A}]:50122 to [192.0.2.1]:25", "connect"),
    (f"PASS NEW [{A}]:50122", "pass"),
    (f"PASS OLD [{A}]:50122", "pass"),
    (f"DNSBL rank 4 for [{A}]:50122", "dnsbl"),
    (f"PREGREET 11 after 0.07 from [{A}]:50122: EHLO pc.example.net\\r\\n", "pregreet"),
    (f"HANGUP after 1.2 from [{A}]:50122 in tests after SMTP handshake", "hangup"),
    (f"DISCONNECT [{A}]:50122", "disconnect"),
    (
        f"NOQUEUE: reject: RCPT from [{A}]:50122: 550 5.7.1 Service unavailable; client [{A}] blocked"
        " using zen.example.org; from=<a@example.net>, to=<b@example.org>, proto=ESMTP, helo=<pc.example.net>",
        "reject",
    ),
    (f"NOQUEUE: reject: CONNECT from [{A}]:50122: too many connections", "reject"),
    (f"COMMAND PIPELINING from [{A}]:50122 after EHLO: MAIL FROM:<a@example.net>\\r\\n", "protocol"),
    (f"COMMAND TIME LIMIT from [{A}]:50122 after RCPT", "protocol"),
    (f"NON-SMTP COMMAND from [{A}]:50122 after CONNECT: GET / HTTP/1.1", "protocol"),
    (f"BARE NEWLINE from [{A}]:50122 after DATA", "protocol"),
    (f"DENYLISTED [{A}]:50122", "access"),
    (f"WHITELISTED [{A}]:50122", "access"),
    ("entering STRESS mode with 70 connections", None),
]


@pytest.mark.parametrize("message", ANVIL)
def test_anvil_statistics_are_noise(tmp_path, message):
    events, result = run(tmp_path, [line("anvil[1201]", message)])
    assert events.is_empty()
    assert result.noise == {"noise:postfix_anvil": 1}


@pytest.mark.parametrize(("message", "verdict"), POSTSCREEN)
def test_postscreen_verdicts_are_noise_by_kind(tmp_path, message, verdict):
    events, result = run(tmp_path, [line("postscreen[1202]", message)])
    assert events.is_empty()
    kind = f"noise:postscreen_{verdict}" if verdict else "noise:postfix_postscreen"
    assert result.noise == {kind: 1}


def test_screened_client_counts_only_its_auth_attempts(tmp_path):
    """A client postscreen lets through to submission: its two SASL failures are its attempts; the
    postscreen and anvil lines around them add none."""
    sasl = f"warning: unknown[{A}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
    lines = [
        line("postscreen[1202]", f"CONNECT from [{A}]:50122 to [192.0.2.1]:25", 1),
        line("postscreen[1202]", f"DNSBL rank 4 for [{A}]:50122", 1),
        line("postscreen[1202]", f"PASS NEW [{A}]:50122", 2),
        line("submission/smtpd[1300]", sasl, 3),
        line("submission/smtpd[1301]", sasl, 5),
        line(
            "anvil[1201]", f"statistics: max connection rate 2/60s for (submission:{A}) at Nov 22 10:00:05", 8
        ),
    ]
    events, _ = run(tmp_path, lines)
    assert len(events) == 2
    assert events["attempts"].sum() == 2
    assert set(events["source_ip"]) == {A}


SMTPD_WORDS = [
    "warning: unknown[198.51.100.9]: SASL LOGIN authentication failed: x, sasl_username=ann",
    "lost connection after AUTH from unknown[198.51.100.9]",
    "4F1AB: client=pc.example.net[198.51.100.9], sasl_method=PLAIN, sasl_username=ann",
    "4F1AB: from=<a@example.net>, size=1, nrcpt=1 (queue active)",
    "SASL authentication failed; server x[198.51.100.9] said: 535",
    "NOQUEUE: reject: ",
]
CLIENT_TEXT = st.one_of(NAMES, st.sampled_from(SMTPD_WORDS))

HOSTILE = [
    ("PREGREET 11 after 0.07 from [203.0.113.7]:50122: {u}", "pregreet"),
    ("COMMAND PIPELINING from [203.0.113.7]:50122 after {u}: {u}", "protocol"),
    ("NON-SMTP COMMAND from [203.0.113.7]:50122 after CONNECT: {u}", "protocol"),
    (
        "NOQUEUE: reject: RCPT from [203.0.113.7]:50122: 550 5.7.1 Service unavailable; client"
        " [203.0.113.7] blocked using zen.example.org; from=<{u}>, to=<{u}>, proto=ESMTP, helo=<{u}>",
        "reject",
    ),
]


@pytest.mark.parametrize(("template", "verdict"), HOSTILE)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(CLIENT_TEXT, min_size=1, max_size=4))
def test_client_text_cannot_make_postscreen_lines_attempts(tmp_path_factory, template, verdict, texts):
    """Whatever the client sends (smtpd's SASL warning, a queue line, the daemons' markers), a
    postscreen line stays its verdict's noise."""
    tmp = tmp_path_factory.mktemp("psc")
    lines = [line("postscreen[1202]", template.replace("{u}", t.replace("\n", "\\n"))) for t in texts]
    events, result = run(tmp, lines)
    assert events.is_empty()
    assert result.noise == {f"noise:postscreen_{verdict}": len(texts)}
