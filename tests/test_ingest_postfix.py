"""Postfix line kinds and the Postfix-side correlation (sessions, Dovecot SASL, qmgr sends)."""

from __future__ import annotations

import pytest

from detector.schema import Action, Outcome, Service
from tests.ingest_helpers import one, run

T = "Nov 22 10:00:0"

EVENTS = [
    pytest.param(
        f"{T}1 mx1 postfix/submission/smtpd[812]: 3F2A11C0D7: client=pc.example.com[203.0.113.70], sasl_method=PLAIN, sasl_username=Zoe@Example.org",
        dict(
            service=Service.SUBMISSION,
            action=Action.LOGIN,
            outcome=Outcome.SUCCESS,
            account="zoe@example.org",
            source_ip="203.0.113.70",
            auth_method="PLAIN",
            session_id="3F2A11C0D7",
        ),
        id="client-sasl-submission",
    ),
    pytest.param(
        f"{T}1 mx1 postfix/smtpd[812]: 4B1: client=unknown[2001:db8::5], sasl_method=LOGIN, sasl_username=al",
        dict(service=Service.SMTP, outcome=Outcome.SUCCESS, source_ip="2001:db8::5", account="al"),
        id="client-sasl-smtp-ipv6",
    ),
    pytest.param(
        f"{T}2 mx1 postfix/smtpd[813]: warning: unknown[198.51.100.80]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        dict(
            outcome=Outcome.FAILURE,
            account=None,
            source_ip="198.51.100.80",
            auth_method="LOGIN",
            reason="authentication failure",
        ),
        id="sasl-failed-base64-prompt",
    ),
    pytest.param(
        f"{T}2 mx1 postfix-in/smtpd[813]: warning: host.example.net[198.51.100.81]: SASL PLAIN authentication failed: authentication failure, sasl_username=bea@example.org",
        dict(
            outcome=Outcome.FAILURE, account="bea@example.org", source_ip="198.51.100.81", auth_method="PLAIN"
        ),
        id="sasl-failed-with-username",
    ),
    pytest.param(
        "2026-11-22T10:00:02.150Z mx1 postfix/smtps/smtpd[30543]: warning: unknown[198.51.100.82]:48123: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        dict(
            service=Service.SUBMISSION, outcome=Outcome.FAILURE, source_ip="198.51.100.82", source_port=48123
        ),
        id="sasl-failed-with-port",
    ),
    pytest.param(
        f"{T}3 mx1 postfix/submission/smtpd[814]: lost connection after AUTH from unknown[198.51.100.83]",
        dict(outcome=Outcome.UNKNOWN, source_ip="198.51.100.83", attempts=1),
        id="lost-after-auth-alone",
    ),
    pytest.param(
        f"{T}3 mx1 postfix/smtpd[816]: improper command pipelining after AUTH from unknown[198.51.100.85]: QUIT",
        dict(outcome=Outcome.UNKNOWN, source_ip="198.51.100.85", attempts=1),
        id="pipelining-after-auth",
    ),
    pytest.param(
        f"{T}3 mx1 postfix/smtpd[815]: disconnect from unknown[198.51.100.84] ehlo=1 auth=0/2 quit=1 commands=2/4",
        dict(outcome=Outcome.FAILURE, source_ip="198.51.100.84", attempts=2),
        id="disconnect-auth-counter",
    ),
]


@pytest.mark.parametrize(("line", "want"), EVENTS)
def test_event(tmp_path, line, want):
    row = one(tmp_path, line)
    assert row["daemon"] == "postfix"
    for key, value in want.items():
        assert row[key] == value, key


NOISE = [
    pytest.param(
        f"{T}1 mx1 postfix/smtpd[1]: connect from unknown[198.51.100.90]", "noise:connect", id="connect"
    ),
    pytest.param(
        f"{T}1 mx1 postfix/smtpd[1]: disconnect from unknown[198.51.100.90] ehlo=1 auth=1 quit=1 commands=3",
        "noise:disconnect",
        id="disconnect-auth-ok",
    ),
    pytest.param(
        f"{T}1 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[198.51.100.91]: 554 5.7.1 <x@example.com>: Relay access denied; from=<a@b> to=<x@example.com> proto=ESMTP helo=<h>",
        "noise:noqueue",
        id="noqueue-reject",
    ),
    pytest.param(
        f"{T}1 mx1 postfix/cleanup[2]: 5C0: message-id=<m@example.org>", "noise:postfix_cleanup", id="cleanup"
    ),
    pytest.param(
        f"{T}1 mx1 postfix/smtp[3]: 5C0: to=<x@example.com>, relay=mx.example.com[192.0.2.7]:25, delay=1, dsn=2.0.0, status=sent (250 ok)",
        "noise:postfix_smtp",
        id="smtp-delivery",
    ),
    pytest.param(
        f"{T}1 mx1 postfix/postscreen[4]: PASS OLD [198.51.100.92]:5100",
        "noise:postscreen_pass",
        id="postscreen",
    ),
    pytest.param(
        f"{T}1 mx1 postfix/smtpd[1]: 5C1: client=relay.example.com[192.0.2.8]",
        "noise:client",
        id="client-unauthenticated",
    ),
    pytest.param(
        f"{T}1 mx1 postfix/qmgr[5]: 5C2: from=<n@example.com>, size=300, nrcpt=1 (queue active)",
        "noise:qmgr",
        id="qmgr-unauthenticated",
    ),
    pytest.param(
        f"{T}1 mx1 postfix-in/cleanup[2]: 5C0: x", "noise:postfix_cleanup", id="agent-other-instance"
    ),
    pytest.param(f"{T}1 mx1 postfix/qmgr[5]: 5C0: removed", "noise:postfix_qmgr", id="qmgr-removed"),
    pytest.param(f"{T}1 mx1 postfix/flush[6]: x", "noise:postfix_other", id="agent-unknown"),
    pytest.param(
        f"{T}1 mx1 postfix/smtpd[1]: lost connection after DATA from h[192.0.2.8]",
        "noise:smtpd_other",
        id="smtpd-other",
    ),
    pytest.param(
        f"{T}1 mx1 postfix/smtp[3]: 5C0: SASL authentication failed; server mx.example.com[192.0.2.7] said: 535 no",
        "noise:smtp_client_auth",
        id="smtp-client-sasl",
    ),
    pytest.param(f"{T}1 mx1 postfix/cleanup[2]: NOQUEUE: x", "noise:noqueue", id="noqueue-other-agent"),
    pytest.param(
        f"{T}1 mx1 postfix/smtpd[1]: disconnect from h[192.0.2.8] ehlo=1 auth=1 quit=1 commands=3",
        "noise:disconnect",
        id="disconnect-auth-ok",
    ),
]


@pytest.mark.parametrize(("line", "kind"), NOISE)
def test_noise(tmp_path, line, kind):
    events, result = run(tmp_path, [line])
    assert events.is_empty()
    assert result.noise == {kind: 1}


def test_one_session_counts_its_failure_once(tmp_path):
    ip = "198.51.100.100"
    lines = [
        f"{T}1 mx1 postfix/submission/smtpd[900]: connect from unknown[{ip}]",
        f"{T}2 mx1 postfix/submission/smtpd[900]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        f"{T}3 mx1 postfix/submission/smtpd[900]: lost connection after AUTH from unknown[{ip}]",
        f"{T}3 mx1 postfix/submission/smtpd[900]: disconnect from unknown[{ip}] ehlo=1 auth=0/1 commands=1/2",
        # next session of the same process and address: no SASL warning, the counter counts
        f"{T}5 mx1 postfix/submission/smtpd[900]: connect from unknown[{ip}]",
        f"{T}6 mx1 postfix/submission/smtpd[900]: disconnect from unknown[{ip}] ehlo=1 auth=0/2 commands=1/3",
    ]
    events, result = run(tmp_path, lines)
    assert events["attempts"].sum() == 3
    assert events["line_number"].to_list() == [2, 6]
    assert result.noise["noise:merged"] == 2


def test_dovecot_sasl_fills_the_account_and_counts_once(tmp_path):
    lines = [
        f"{T}2 mx1 dovecot: auth: passwd-file(cat@example.org,198.51.100.101): Password mismatch",
        f"{T}2 mx1 postfix/submission/smtpd[901]: warning: unknown[198.51.100.101]: SASL PLAIN authentication failed: UGFzc3dvcmQ6",
    ]
    events, result = run(tmp_path, lines)
    assert len(events) == 1
    row = events.row(0, named=True)
    assert (row["daemon"], row["account"], row["reason"], row["line_number"]) == (
        "postfix",
        "cat@example.org",
        "Password mismatch",
        2,
    )
    assert result.noise["noise:merged"] == 1


def test_qmgr_line_becomes_a_send_of_the_authenticated_user(tmp_path):
    lines = [
        f"{T}1 mx1 postfix/submission/smtpd[902]: 7D3E: client=pc.example.com[203.0.113.71], sasl_method=PLAIN, sasl_username=dan@example.org",
        f"{T}2 mx1 postfix/qmgr[50]: 7D3E: from=<dan@example.org>, size=4096, nrcpt=7 (queue active)",
        f"{T}9 mx1 postfix/qmgr[50]: 7D3E: from=<dan@example.org>, size=4096, nrcpt=7 (queue active)",
    ]
    events, result = run(tmp_path, lines)
    send = events.filter(action=Action.SEND)
    assert len(send) == 1
    row = send.row(0, named=True)
    assert (row["account"], row["source_ip"], row["recipients"], row["message_size"]) == (
        "dan@example.org",
        "203.0.113.71",
        7,
        4096,
    )
    assert result.noise == {"noise:qmgr_repeat": 1}
