"""Postfix SASL failures in every wording smtpd writes (smtpd_sasl_glue.c: ``%s: SASL %s
authentication failed: %s`` and ``... authentication aborted``), with Dovecot or Cyrus SASL
behind, on the smtp, submission and smtps services; the address always from ``host[addr]``."""

from __future__ import annotations

import pytest

from detector.schema import Outcome, Service
from tests.ingest_helpers import one, run

T = "Nov 22 10:00:0"
W = "warning: unknown[198.51.100.80]"


def line(program: str, message: str, s: int = 2) -> str:
    return f"{T}{s} mx1 {program}[813]: {message}"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param(
            line("postfix/submission/smtpd", f"{W}: SASL LOGIN authentication failed: UGFzc3dvcmQ6"),
            dict(service=Service.SUBMISSION, outcome=Outcome.FAILURE, account=None, auth_method="LOGIN"),
            id="submission-login-password-prompt",
        ),
        pytest.param(
            line("postfix/submission/smtpd", f"{W}: SASL LOGIN authentication failed: VXNlcm5hbWU6"),
            dict(outcome=Outcome.FAILURE, reason="authentication failure", account=None),
            id="login-username-prompt",
        ),
        pytest.param(
            line("postfix/smtps/smtpd", f"{W}: SASL PLAIN authentication failed: authentication failure"),
            dict(service=Service.SUBMISSION, outcome=Outcome.FAILURE, auth_method="PLAIN"),
            id="smtps-plain-dovecot",
        ),
        pytest.param(
            line("postfix/smtpd", f"{W}: SASL PLAIN authentication failed: "),
            dict(service=Service.SMTP, outcome=Outcome.FAILURE, reason="authentication failure"),
            id="smtp-empty-reason",
        ),
        pytest.param(
            line("postfix/smtpd", "warning: unknown[2001:db8::5]: SASL CRAM-MD5 authentication failed: bad"),
            dict(source_ip="2001:db8::5", auth_method="CRAM-MD5"),
            id="ipv6-cram",
        ),
        pytest.param(
            line(
                "postfix/smtpd",
                "warning: mail.example.net[198.51.100.80]:52311: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
            ),
            dict(source_port=52311, source_ip="198.51.100.80"),
            id="named-host-with-port",
        ),
        pytest.param(
            line(
                "postfix/submission/smtpd",
                f"{W}: SASL LOGIN authentication failed: authentication failure, sasl_username=Bob@Example.org",
            ),
            dict(account="bob@example.org", outcome=Outcome.FAILURE),
            id="postfix-3-sasl-username",
        ),
        pytest.param(
            line(
                "postfix/submission/smtpd",
                f"{W}: SASL LOGIN authentication failed: Connection lost to authentication server",
            ),
            dict(outcome=Outcome.TEMPFAIL, account=None),
            id="auth-server-gone-is-tempfail",
        ),
        pytest.param(
            line("postfix/submission/smtpd", f"{W}: SASL LOGIN authentication aborted"),
            dict(outcome=Outcome.UNKNOWN, reason="authentication aborted", auth_method="LOGIN"),
            id="aborted-by-client",
        ),
        pytest.param(
            line(
                "postfix/submission/smtpd",
                f"{W}: SASL PLAIN authentication failed: Invalid authentication mechanism",
            ),
            dict(outcome=Outcome.FAILURE, reason="Invalid authentication mechanism"),
            id="unknown-mechanism",
        ),
    ],
)
def test_sasl_failure_variants(tmp_path, text, want):
    event = one(tmp_path, text, year=2026)
    want = {"source_ip": "198.51.100.80", "action": "login", **want}
    assert {k: event[k] for k in want} == want


@pytest.mark.parametrize(
    "message",
    [
        "warning: SASL authentication failure: Password verification failed",
        "warning: SASL authentication failure: cannot connect to saslauthd server: No such file or directory",
        "warning: SASL authentication problem: unable to open Berkeley db /etc/sasldb2: No such file or directory",
    ],
)
def test_cyrus_sasl_lines_name_no_client_and_are_noise(tmp_path, message):
    events, result = run(tmp_path, [line("postfix/submission/smtpd", message)], year=2026)
    assert events.is_empty() and result.noise == {"noise:cyrus_sasl": 1} and result.quarantine.is_empty()


def test_cyrus_line_and_the_smtpd_warning_make_one_attempt(tmp_path):
    lines = [
        line(
            "postfix/submission/smtpd", "warning: SASL authentication failure: Password verification failed"
        ),
        line("postfix/submission/smtpd", f"{W}: SASL PLAIN authentication failed: authentication failure"),
    ]
    events, _ = run(tmp_path, lines, year=2026)
    assert events.height == 1 and events["source_ip"].item() == "198.51.100.80"


@pytest.mark.parametrize(
    ("first", "attempts"),
    [
        (f"{W}: SASL LOGIN authentication aborted", 1),
        (f"{W}: SASL LOGIN authentication failed: UGFzc3dvcmQ6", 1),
    ],
)
def test_a_session_counts_its_attempt_once(tmp_path, first, attempts):
    """The warning, ``lost connection after AUTH`` and the ``auth=0/1`` counter of one session."""
    lines = [
        line("postfix/submission/smtpd", "connect from unknown[198.51.100.80]", 1),
        line("postfix/submission/smtpd", first, 2),
        line("postfix/submission/smtpd", "lost connection after AUTH from unknown[198.51.100.80]", 3),
        line(
            "postfix/submission/smtpd",
            "disconnect from unknown[198.51.100.80] ehlo=1 auth=0/1 commands=1/2",
            3,
        ),
    ]
    events, _ = run(tmp_path, lines, year=2026)
    assert events.height == attempts


@pytest.mark.parametrize(
    "method",
    # one SMTP token: smtpd splits the AUTH command at white space
    ["X]:", "LOGIN,sasl_username=victim@example.org", "[203.0.113.66]", "unknown[203.0.113.66]:"],
)
def test_the_address_never_comes_from_the_client_written_method(tmp_path, method):
    """The mechanism is the client's word (``AUTH <mech>``); the address is Postfix's ``host[addr]``."""
    text = line(
        "postfix/submission/smtpd", f"{W}: SASL {method} authentication failed: authentication failure"
    )
    events, result = run(tmp_path, [text], year=2026)
    if events.height:
        assert events["source_ip"].item() == "198.51.100.80"
        assert events["account"].item() is None
    else:
        assert result.quarantine.height == 1
