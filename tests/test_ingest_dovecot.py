"""Dovecot line kinds, one case per kind and version, written in our own words after real formats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from detector.schema import Action, Outcome, Service
from tests.ingest_helpers import one, run

S = "Nov 22 10:00:00 mx1 dovecot:"
LP = "2026-11-22 10:00:00"  # Dovecot's own log_path stamp

EVENTS = [
    pytest.param(
        f"{S} imap-login: Login: user=<Ann.Lee@Example.net>, method=PLAIN, rip=203.0.113.9, lip=192.0.2.1, mpid=311, TLS, session=<aB3dE5gH>",
        dict(
            service=Service.IMAP,
            action=Action.LOGIN,
            outcome=Outcome.SUCCESS,
            account="ann.lee@example.net",
            source_ip="203.0.113.9",
            local_ip="192.0.2.1",
            auth_method="PLAIN",
            tls=True,
            session_id="aB3dE5gH",
        ),
        id="2.3-imap-login-ok",
    ),
    pytest.param(
        f"{S} pop3-login: Login: user=<bo>, method=PLAIN, rip=::ffff:198.51.100.4, lip=::ffff:192.0.2.1, mpid=9, secured, session=<x1>",
        dict(
            service=Service.POP3,
            outcome=Outcome.SUCCESS,
            account="bo",
            source_ip="198.51.100.4",
            local_ip="192.0.2.1",
            tls=True,
        ),
        id="2.2-pop3-login-ok-mapped",
    ),
    pytest.param(
        f"{S} submission-login: Login: user=<cy@example.net>, method=LOGIN, rip=2001:DB8:0:0::1%eth0, lip=2001:db8::2, mpid=2, session=<q>",
        dict(
            service=Service.SUBMISSION,
            outcome=Outcome.SUCCESS,
            source_ip="2001:db8::1",
            local_ip="2001:db8::2",
            tls=False,
            auth_method="LOGIN",
        ),
        id="2.4-submission-login-ok-ipv6",
    ),
    pytest.param(
        f"{S} imap-login: Disconnected (auth failed, 3 attempts in 12 secs): user=<dee@example.net>, method=PLAIN, rip=198.51.100.20, lip=192.0.2.1, TLS, session=<s2>",
        dict(
            outcome=Outcome.FAILURE,
            attempts=3,
            account="dee@example.net",
            source_ip="198.51.100.20",
            reason="auth failed",
        ),
        id="2.2-disconnected-auth-failed",
    ),
    pytest.param(
        f"{S} imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 4 secs): user=<eve@example.net>, method=PLAIN, rip=198.51.100.21, lip=192.0.2.1, TLS, session=<s3>",
        dict(outcome=Outcome.FAILURE, attempts=1, account="eve@example.net", source_ip="198.51.100.21"),
        id="2.3-aborted-login",
    ),
    pytest.param(
        f"{S} pop3-login: Disconnected: Connection closed (auth failed, 2 attempts in 30 secs): user=<fay@example.net>, method=PLAIN, rip=198.51.100.22, lip=192.0.2.1, TLS: Connection closed, session=<s4>",
        dict(service=Service.POP3, outcome=Outcome.FAILURE, attempts=2, source_ip="198.51.100.22", tls=True),
        id="2.3-connection-closed",
    ),
    pytest.param(
        f"{S} imap-login: Login aborted: Logged out (auth failed, 4 attempts in 9 secs) (auth_failed): user=<gus@example.net>, method=PLAIN, rip=198.51.100.23, lip=192.0.2.1, TLS, session=<s5>",
        dict(outcome=Outcome.FAILURE, attempts=4, account="gus@example.net", source_ip="198.51.100.23"),
        id="2.4-login-aborted",
    ),
    pytest.param(
        f"{S} imap-login: Aborted login (auth failed, 6 attempts): rip=198.51.100.24, lip=127.0.0.1",
        dict(outcome=Outcome.FAILURE, attempts=6, account=None, source_ip="198.51.100.24"),
        id="2.0-aborted-no-user",
    ),
    pytest.param(
        f"{S} imap-login: Disconnected (tried to use disallowed plaintext auth): user=<>, rip=198.51.100.25, lip=192.0.2.1, session=<s6>",
        dict(outcome=Outcome.POLICY, account=None, source_ip="198.51.100.25"),
        id="plaintext-policy",
    ),
    pytest.param(
        f"{S} pop3-login: Aborted login (tried to use disabled plaintext auth): rip=198.51.100.26, lip=192.0.2.1",
        dict(outcome=Outcome.POLICY, source_ip="198.51.100.26", service=Service.POP3),
        id="2.0-plaintext-disabled",
    ),
    pytest.param(
        f"{S} auth-worker(4021): passwd-file(hal@example.net,198.51.100.30,<s7>): Password mismatch (given password: {{SHA256}}9f86d081884c7d659a2feaa0c55ad015)",
        dict(
            outcome=Outcome.FAILURE,
            account="hal@example.net",
            source_ip="198.51.100.30",
            session_id="s7",
            reason="Password mismatch",
            password_hash="{SHA256}9f86d081884c7d65",
        ),
        id="2.3-passwd-file-mismatch-hash",
    ),
    pytest.param(
        f"{S} auth: Info: sql(ivy@example.net,198.51.100.31): unknown user",
        dict(
            outcome=Outcome.UNKNOWN_USER,
            account="ivy@example.net",
            source_ip="198.51.100.31",
            reason="unknown user",
        ),
        id="2.2-sql-unknown-user",
    ),
    pytest.param(
        f"{S} auth-worker(77): conn unix:auth-worker (pid=70,uid=109): auth-worker<3>: pam(jo,198.51.100.32,<s8>): pam_authenticate() failed: Authentication failure (password mismatch?)",
        dict(outcome=Outcome.FAILURE, account="jo", source_ip="198.51.100.32"),
        id="2.3-pam-conn-prefix",
    ),
    pytest.param(
        f"{S} auth: ldap(kim@example.net,2001:db8::44,<s9>): invalid credentials (SHA1 of given password: 7c4a8d)",
        dict(outcome=Outcome.FAILURE, source_ip="2001:db8::44", password_hash="{SHA1}7c4a8d"),
        id="2.4-ldap-sha1-given",
    ),
    pytest.param(
        f"{S} auth: policy(lou@example.net,198.51.100.33,<sa>): Authentication failure due to policy server refusal",
        dict(outcome=Outcome.POLICY, account="lou@example.net"),
        id="policy-refusal",
    ),
    pytest.param(
        f"{S} auth-worker(5): checkpassword(max,198.51.100.34): Account expired",
        dict(outcome=Outcome.DISABLED, account="max"),
        id="checkpassword-expired",
    ),
    pytest.param(
        f"{S} auth: sql(ned@example.net,198.51.100.35): unknown user (given password: hunter2)",
        dict(outcome=Outcome.UNKNOWN_USER),
        id="clear-given-password-digested",
    ),
    pytest.param(
        f"{S} imap(ola@example.net)<4242><aB3dE5gH>: Disconnected: Logged out in=321 out=65432 deleted=0 expunged=0",
        dict(
            service=Service.IMAP,
            action=Action.LOGOUT,
            outcome=None,
            account="ola@example.net",
            session_id="aB3dE5gH",
            bytes_in=321,
            bytes_out=65432,
        ),
        id="2.3-imap-logout",
    ),
    pytest.param(
        f"{S} imap(pia@example.net): Connection closed (IDLE running for 0.001 + waiting input for 28.4 secs) in=12 out=340",
        dict(action=Action.LOGOUT, account="pia@example.net", bytes_in=12, bytes_out=340),
        id="2.2-imap-connection-closed",
    ),
    pytest.param(
        f"{S} pop3(quinn@example.net)<99><b7>: Disconnected: Logged out top=0/0, retr=3/45678, del=3/3, size=45678",
        dict(service=Service.POP3, action=Action.LOGOUT, bytes_out=45678, message_size=45678),
        id="2.3-pop3-logout",
    ),
    pytest.param(
        f"{LP} imap-login: Info: Login: user=<rae@example.net>, method=PLAIN, rip=203.0.113.40, lip=192.0.2.1, mpid=5, TLS, session=<lp1>",
        dict(host=None, outcome=Outcome.SUCCESS, account="rae@example.net", source_ip="203.0.113.40"),
        id="log_path-login-ok",
    ),
    pytest.param(
        f"{LP} auth: Info: passwd-file(sam@example.net,203.0.113.41,<lp2>): Password mismatch",
        dict(host=None, outcome=Outcome.FAILURE, account="sam@example.net"),
        id="log_path-auth",
    ),
    pytest.param(
        f"{LP} imap(tia@example.net)<7><lp3>: Info: Disconnected: Logged out in=1 out=2",
        dict(host=None, action=Action.LOGOUT, account="tia@example.net", bytes_out=2),
        id="log_path-logout",
    ),
    pytest.param(
        f"{S} pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=uma@example.net rhost=198.51.100.50",
        dict(outcome=Outcome.FAILURE, account="uma@example.net", source_ip="198.51.100.50"),
        id="pam_unix",
    ),
    # every passdb, with and without the session, as auth and auth-worker lines
    *[
        pytest.param(
            f"{S} {proc}: {passdb}(vic@example.net,203.0.113.60{sess}): {reason}",
            dict(outcome=outcome, account="vic@example.net", source_ip="203.0.113.60"),
            id=f"passdb-{passdb}-{proc[:4]}{'-sess' if sess else ''}",
        )
        for passdb, reason, outcome in [
            (
                "pam",
                "pam_authenticate() failed: Authentication failure (password mismatch?)",
                Outcome.FAILURE,
            ),
            ("ldap", "invalid credentials", Outcome.FAILURE),
            ("passwd-file", "Password mismatch", Outcome.FAILURE),
            ("sql", "unknown user", Outcome.UNKNOWN_USER),
            ("checkpassword", "Login failed (status=1)", Outcome.TEMPFAIL),
            ("lua", "Password mismatch", Outcome.FAILURE),
            ("oauth2", "Password mismatch", Outcome.FAILURE),
            ("static", "Password mismatch", Outcome.FAILURE),
        ]
        for proc in ("auth", "auth-worker(31)")
        for sess in ("", ",<Qw3+/x>", ",")
    ],
    pytest.param(
        f"{S} auth: Info: ldap(wes@example.net,203.0.113.61,): invalid credentials",
        dict(outcome=Outcome.FAILURE, account="wes@example.net", source_ip="203.0.113.61"),
        id="passdb-empty-session-slot",
    ),
    pytest.param(
        f"{S} auth(default): pam(xia@example.net,203.0.113.62): pam_authenticate() failed: Authentication failure",
        dict(outcome=Outcome.FAILURE, account="xia@example.net", source_ip="203.0.113.62"),
        id="dovecot-2.2-auth-default",
    ),
    pytest.param(
        "Nov 22 10:00:00 mx1 dovecot-auth: pam(xia@example.net,203.0.113.63): pam_authenticate() failed: Authentication failure",
        dict(outcome=Outcome.FAILURE, account="xia@example.net", source_ip="203.0.113.63"),
        id="dovecot-2.1-dovecot-auth-program",
    ),
    pytest.param(
        "Nov 22 10:00:00 mx1 dovecot-auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=yul@example.net rhost=203.0.113.64  user=yul@example.net",
        dict(outcome=Outcome.FAILURE, account="yul@example.net", source_ip="203.0.113.64"),
        id="pam_unix-dovecot-auth-program",
    ),
    pytest.param(
        "Nov 22 10:00:00 mx1 auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=zed@example.net rhost=203.0.113.65",
        dict(outcome=Outcome.FAILURE, account="zed@example.net", source_ip="203.0.113.65"),
        id="pam_unix-auth-program",
    ),
    pytest.param(
        f"{S} imap-login: Disconnected (proxy dest auth failed): user=<amy@example.net>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1, session=<Px1>",
        dict(outcome=Outcome.FAILURE, account="amy@example.net", source_ip="203.0.113.66", attempts=1),
        id="proxy-dest-auth-failed",
    ),
    pytest.param(
        f"{S} imap-login: proxy(amy@example.net): Login failed to 192.0.2.10:143: [AUTHENTICATIONFAILED] Authentication failed.: user=<amy@example.net>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1, TLS, session=<Px1>",
        dict(
            outcome=Outcome.FAILURE,
            account="amy@example.net",
            source_ip="203.0.113.66",
            attempts=1,
            reason="proxy dest auth failed",
            service="imap",
            session_id="Px1",
        ),
        id="proxy-login-failed-to",
    ),
    pytest.param(
        f"{S} pop3-login: Info: proxy(amy@example.net): Login failed to mail2.example.org:110/amy (master admin): -ERR [AUTH] Authentication failed.: user=<amy@example.net>, method=PLAIN, rip=2001:db8::66, lip=2001:db8::1, session=<Px2>",
        dict(outcome=Outcome.FAILURE, account="amy@example.net", source_ip="2001:db8::66", service="pop3"),
        id="proxy-login-failed-to-remote-user-master",
    ),
    pytest.param(
        "@400000006a0b1c2d1a2b3c4d imap-login: Disconnected (auth failed, 2 attempts in 4 secs): user=<bo@example.net>, method=PLAIN, rip=203.0.113.67, lip=192.0.2.1, session=<T4i>",
        dict(
            host=None, outcome=Outcome.FAILURE, account="bo@example.net", source_ip="203.0.113.67", attempts=2
        ),
        id="tai64n-multilog",
    ),
]

LOCAL_PASSDB = [
    f"{S} auth: passwd-file(cy@example.net): unknown user",
    f"{S} auth: pam(cy@example.net,<Qw3>): unknown user",
]


@pytest.mark.parametrize("line", LOCAL_PASSDB)
def test_passdb_line_without_address_is_local_noise(tmp_path, line):
    events, result = run(tmp_path, [line])
    assert events.is_empty() and result.quarantine.is_empty()
    assert result.noise == {"noise:dovecot_auth_local": 1}


def test_tai64n_label_is_utc_minus_ten_seconds(tmp_path):
    row = one(
        tmp_path,
        "@400000006a0b1c2d1a2b3c4d dovecot: auth: passwd-file(dee@example.net,203.0.113.68): unknown user",
    )
    assert row["timestamp"] == datetime(2026, 5, 18, 14, 3, 15, 439041, tzinfo=UTC)


@pytest.mark.parametrize(("line", "want"), EVENTS)
def test_event(tmp_path, line, want):
    row = one(tmp_path, line)
    assert row["daemon"] == "dovecot"
    for key, value in want.items():
        assert row[key] == value, key


def test_clear_text_password_is_never_stored(tmp_path):
    row = one(
        tmp_path, f"{S} auth: sql(ned@example.net,198.51.100.35): unknown user (given password: hunter2)"
    )
    assert "hunter2" not in (row["password_hash"] or "")
    assert row["password_hash"].startswith("digest:")


NOISE = [
    pytest.param(
        f"{S} master: Dovecot v2.3.21 (47349e2482) starting up for imap, pop3",
        "noise:dovecot_other",
        id="startup",
    ),
    pytest.param(
        f"{S} lmtp(vic@example.net)<5><x>: msgid=<a@b>: saved mail to INBOX", "noise:dovecot_other", id="lmtp"
    ),
    pytest.param(
        f"{S} imap-login: Disconnected (no auth attempts in 3 secs): user=<>, rip=198.51.100.60, lip=192.0.2.1, session=<n1>",
        "noise:dovecot_login",
        id="no-auth-attempts",
    ),
    pytest.param(
        f"{S} imap-login: proxy(amy@example.net): Login failed to 192.0.2.10:143: Authentication failed",
        "noise:dovecot_proxy",
        id="proxy-login-failed-to-without-client-fields",
    ),
    pytest.param(
        f"{S} imap-login: proxy(amy@example.net): started proxying to 192.0.2.10:143: user=<amy@example.net>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1, session=<Px3>",
        "noise:dovecot_login",
        id="proxy-started",
    ),
    pytest.param(
        f"{S} auth: Warning: auth client 0 disconnected with 1 pending requests",
        "noise:dovecot_auth",
        id="auth-warning",
    ),
    pytest.param(
        f"{S} imap(wu@example.net)<1><y>: Warning: Mailbox is locked", "noise:dovecot_mail", id="mail-warning"
    ),
]


@pytest.mark.parametrize(("line", "kind"), NOISE)
def test_noise(tmp_path, line, kind):
    events, result = run(tmp_path, [line])
    assert events.is_empty()
    assert result.noise == {kind: 1}


def test_auth_looking_line_it_cannot_read_is_quarantined(tmp_path):
    events, result = run(tmp_path, [f"{S} auth: Info: odd layout here: Password mismatch"])
    assert events.is_empty()
    assert result.quarantine["reason"].to_list() == ["unparsed"]
    assert result.quarantine["line_number"].to_list() == [1]


LOGIN = "user=<Ann@X>, method=PLAIN, rip=203.0.113.9, lip=192.0.2.1, mpid=3, TLS, session=<s1>"


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        pytest.param(
            LOGIN, ("ann@x", "203.0.113.9", None, "192.0.2.1", "PLAIN", True, "s1"), id="usual-layout"
        ),
        pytest.param(
            "user=<ann@x>, method=PLAIN, rip=203.0.113.9, lip=192.0.2.1, session=<s1>",
            ("ann@x", "203.0.113.9", None, "192.0.2.1", "PLAIN", False, "s1"),
            id="usual-no-mpid-no-tls",
        ),
        pytest.param(
            "user=<ann@x>, method=PLAIN, rip=203.0.113.9, lip=192.0.2.1, rport=5123, lport=993, TLS, session=<s1>",
            ("ann@x", "203.0.113.9", 5123, "192.0.2.1", "PLAIN", True, "s1"),
            id="other-layout-rport",
        ),
        pytest.param(
            "user=<a,b@x>, method=PLAIN, rip=203.0.113.9, lip=192.0.2.1, mpid=3, session=<s1>",
            ("a,b@x", "203.0.113.9", None, "192.0.2.1", "PLAIN", False, "s1"),
            id="comma-in-user",
        ),
        pytest.param(
            "user=<>, method=PLAIN, rip=203.0.113.9, lip=192.0.2.1, mpid=3, session=<>",
            (None, "203.0.113.9", None, "192.0.2.1", "PLAIN", False, None),
            id="empty-user-and-session",
        ),
    ],
)
def test_login_fields_in_any_layout(tmp_path, fields, want):
    # the usual layout is cut from one split, the others key by key: same values either way
    row = one(tmp_path, f"{S} imap-login: Login: {fields}")
    got = tuple(
        row[k]
        for k in ("account", "source_ip", "source_port", "local_ip", "auth_method", "tls", "session_id")
    )
    assert got == want


@pytest.mark.parametrize(
    ("body", "want"),
    [
        pytest.param(
            "passwd-file(ann@x,203.0.113.9,<s1>): Password mismatch",
            ("ann@x", "203.0.113.9", "s1"),
            id="head",
        ),
        pytest.param(
            "sql(ann@x,203.0.113.9): unknown user", ("ann@x", "203.0.113.9", None), id="head-no-session"
        ),
        pytest.param(
            "ldap(a,b@x,203.0.113.9): Password mismatch", ("a,b@x", "203.0.113.9", None), id="comma-in-user"
        ),
        pytest.param(
            "conn unix:auth-worker (pid=1,uid=2): auth-worker<3>: pam(ann@x,203.0.113.9,<s1>): Password mismatch",
            ("ann@x", "203.0.113.9", "s1"),
            id="2.3-worker-prefix",
        ),
    ],
)
def test_passdb_line_in_any_shape(tmp_path, body, want):
    # the common head is one anchored capture, other shapes the general regex: same groups
    row = one(tmp_path, f"{S} auth: {body}")
    assert (row["account"], row["source_ip"], row["session_id"]) == want


PROXY_TRY = "imap-login: proxy(amy@example.net): Login failed to 192.0.2.10:143: [AUTHENTICATIONFAILED] Authentication failed.: user=<amy@example.net>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1, TLS{session}"
PROXY_END = "imap-login: Disconnected (proxy dest auth failed): user=<amy@example.net>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1, TLS{session}"


@pytest.mark.parametrize(
    ("tries", "session", "attempts"),
    [
        pytest.param(0, ", session=<Px1>", 1, id="end-only"),
        pytest.param(1, ", session=<Px1>", 1, id="one-try"),
        pytest.param(3, ", session=<Px1>", 3, id="three-tries-one-connection"),
        pytest.param(2, "", 2, id="no-session-id"),
    ],
)
def test_proxy_session_counts_each_try_once(tmp_path, tries, session, attempts):
    """Each ``Login failed to`` line is an attempt; the session's ``(proxy dest auth failed)``
    disconnect counts only where there is none."""
    lines = [f"Nov 22 10:00:0{i} px1 dovecot: {PROXY_TRY.format(session=session)}" for i in range(tries)]
    lines.append(f"Nov 22 10:00:09 px1 dovecot: {PROXY_END.format(session=session)}")
    events, result = run(tmp_path, lines)
    assert events["attempts"].sum() == attempts
    assert result.noise.get("noise:merged", 0) == (1 if tries else 0)


def test_proxy_end_of_another_session_still_counts(tmp_path):
    lines = [
        f"Nov 22 10:00:01 px1 dovecot: {PROXY_TRY.format(session=', session=<Px1>')}",
        f"Nov 22 10:00:09 px1 dovecot: {PROXY_END.format(session=', session=<Px2>')}",
    ]
    events, _ = run(tmp_path, lines)
    assert events["attempts"].sum() == 2
