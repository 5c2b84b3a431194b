"""Parsers of the daemons beyond Dovecot and Postfix: one case per line kind per daemon.

Every line here is written for these tests (documentation address ranges, made-up accounts),
modelled on the formats the daemons write.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.ingest import registry
from detector.ingest.fields import OUTPUT_SCHEMA
from detector.ingest.registry import KIND, get, parsers
from detector.schema import C
from tests.ingest_helpers import T0, envelope, run

MINE = (
    "exim",
    "courier",
    "cyrus",
    "uwimap",
    "cucipop",
    "opensmtpd",
    "sendmail",
    "nginx_mail",
    "zimbra",
    "exchange",
    "mailu",
    "webmail",
)


def public(schema: pl.Schema) -> pl.Schema:
    """The schema without the private ``_`` columns a parser passes on to correlation."""
    return pl.Schema({k: v for k, v in schema.items() if not k.startswith("_")})


def claimed_by(program: str | None, message: str) -> str | None:
    """Name of the first registered parser claiming the line (the dispatch rule)."""
    frame = envelope([(program, message)])
    for p in parsers():
        if frame.select(p.claims().fill_null(False)).item():
            return p.name
    return None


def parse_one(name: str, program: str | None, message: str) -> dict:
    out = get(name).parse(envelope([(program, message)]).lazy()).collect()
    assert public(out.schema) == OUTPUT_SCHEMA
    assert out.height == 1
    return out.row(0, named=True)


# (parser, program, message, expected columns); "kind" defaults to "event".
EVENTS = [
    # --- Exim
    pytest.param(
        "exim",
        "exim",
        "plain_srv authenticator failed for (laptop) [198.51.100.23]:40122: 535 Incorrect authentication data (set_id=Anna@Example.org)",
        dict(
            outcome="failure",
            account="anna@example.org",
            source_ip="198.51.100.23",
            source_port=40122,
            auth_method="PLAIN",
            service="smtp",
            reason="535 Incorrect authentication data",
        ),
        id="exim-auth-failed-helo",
    ),
    pytest.param(
        "exim",
        "exim4",
        "authenticator failed for relay.example.net [2001:db8:5::9]:14432 I=[192.0.2.1]:587: 535 Incorrect authentication data (set_id=bob)",
        dict(
            outcome="failure",
            account="bob",
            source_ip="2001:db8:5::9",
            local_ip="192.0.2.1",
            service="submission",
        ),
        id="exim-auth-failed-ipv6-no-authenticator",
    ),
    pytest.param(
        "exim",
        None,
        "login authenticator failed for ([203.0.113.99]) [203.0.113.5]: 535 Incorrect authentication data",
        dict(outcome="failure", account=None, source_ip="203.0.113.5", auth_method="LOGIN"),
        id="exim-mainlog-ip-literal-helo-no-port",
    ),
    pytest.param(
        "exim",
        "exim",
        "fixed_cram authenticator failed for (pc) [198.51.100.24]:1025: 435 Unable to authenticate at present (set_id=cleo)",
        dict(outcome="tempfail", account="cleo", auth_method="CRAM-MD5"),
        id="exim-auth-tempfail",
    ),
    pytest.param(
        "exim",
        "exim",
        "dovecot_login authenticator failed for H=(WORKSTATION) [203.0.113.41]:60414 I=[192.0.2.1]:465 Ci=7781: 535 Incorrect authentication data (set_id=Dana@Example.org)",
        dict(
            outcome="failure",
            account="dana@example.org",
            source_ip="203.0.113.41",
            source_port=60414,
            service="submission",
            auth_method="LOGIN",
            reason="535 Incorrect authentication data",
        ),
        id="exim-4.9x-H=-and-Ci",
    ),
    pytest.param(
        "exim",
        "exim4",
        "1kXyZa-000Abc-Q1 <= carl@example.org H=(pc) [198.51.100.4]:51000 I=[192.0.2.1]:587 P=esmtpsa X=TLS1.3:AES256:256 CV=no A=dovecot_plain:Carl@example.org S=2048 id=m1@example.org",
        dict(
            action="send",
            outcome=None,
            account="carl@example.org",
            source_ip="198.51.100.4",
            tls=True,
            message_size=2048,
            session_id="1kXyZa-000Abc-Q1",
            auth_method="PLAIN",
            service="submission",
        ),
        id="exim-authenticated-submission",
    ),
    pytest.param(
        "exim",
        "exim",
        'SMTP protocol error in "AUTH LOGIN" H=(desk) [198.51.100.8] AUTH command used when not advertised',
        dict(
            outcome="policy_refused", source_ip="198.51.100.8", reason="AUTH command used when not advertised"
        ),
        id="exim-auth-not-advertised",
    ),
    pytest.param(
        "exim",
        None,
        'SMTP call from [198.51.100.8] dropped: too many syntax or protocol errors (last command was "AUTH LOGIN")',
        dict(outcome="policy_refused", source_ip="198.51.100.8", service="smtp", account=None),
        id="exim-dropped-after-auth-mainlog",
    ),
    pytest.param(
        "exim",
        "exim4",
        'SMTP call from pc.example.net (desk) [2001:db8::8]:4100 I=[192.0.2.1]:587 Ci=812 dropped: too many syntax or protocol errors (last command was "auth plain [192.0.2.66]:1 I=[192.0.2.1]:25",  C=EHLO,AUTH)',
        dict(
            outcome="policy_refused",
            source_ip="2001:db8::8",
            source_port=4100,
            local_ip="192.0.2.1",
            service="submission",
        ),
        id="exim-4.9x-dropped-after-auth-lowercase",
    ),
    # --- Courier
    pytest.param(
        "courier",
        "imapd",
        "LOGIN FAILED, user=Dora@example.org, ip=[::ffff:198.51.100.61]",
        dict(outcome="failure", account="dora@example.org", source_ip="198.51.100.61", service="imap"),
        id="courier-imap-failed-mapped",
    ),
    pytest.param(
        "courier",
        "pop3d-ssl",
        "LOGIN FAILED, method=PLAIN, ip=[2001:db8:1::61]",
        dict(
            outcome="failure",
            account=None,
            source_ip="2001:db8:1::61",
            service="pop3",
            tls=True,
            auth_method="PLAIN",
        ),
        id="courier-pop3-failed-method-only",
    ),
    pytest.param(
        "courier",
        "imapd-ssl",
        "LOGIN, user=dora, ip=[::ffff:198.51.100.62], port=[40111], protocol=IMAP",
        dict(outcome="success", account="dora", source_ip="198.51.100.62", source_port=40111),
        id="courier-login",
    ),
    pytest.param(
        "courier",
        "pop3d",
        "LOGOUT, user=dora, ip=[::ffff:198.51.100.62], port=[40111], top=0, retr=5120, rcvd=44, sent=6000, time=3, stls=1",
        dict(
            action="logout",
            outcome=None,
            account="dora",
            bytes_in=44,
            bytes_out=6000,
            message_size=5120,
            tls=True,
            service="pop3",
        ),
        id="courier-pop3-logout",
    ),
    pytest.param(
        "courier",
        "courieresmtpd",
        'error,relay=::ffff:203.0.113.70,port=33333,msg="535 Authentication failed.",cmd: AUTH LOGIN',
        dict(
            outcome="failure",
            source_ip="203.0.113.70",
            service="smtp",
            auth_method="LOGIN",
            reason="535 Authentication failed.",
        ),
        id="courier-esmtpd-auth-failed",
    ),
    # --- Cyrus
    pytest.param(
        "cyrus",
        "imaps",
        "badlogin: [198.51.100.80] DIGEST-MD5 (eve@example.org) [SASL(-13): authentication failure: incorrect digest response]",
        dict(
            outcome="failure", account="eve@example.org", source_ip="198.51.100.80", auth_method="DIGEST-MD5"
        ),
        id="cyrus-badlogin-sasl",
    ),
    pytest.param(
        "cyrus",
        "cyrus/imap",
        "badlogin: client.example.net [198.51.100.81] plaintext Frank SASL(-13): authentication failure: checkpass failed",
        dict(outcome="failure", account="frank", source_ip="198.51.100.81", auth_method="LOGIN"),
        id="cyrus-badlogin-plaintext",
    ),
    pytest.param(
        "cyrus",
        "pop3",
        "badlogin: unknown [2001:db8::81] PLAIN [SASL(-13): user not found: no secret in database]",
        dict(outcome="unknown_user", account=None, source_ip="2001:db8::81", service="pop3"),
        id="cyrus-badlogin-unknown-user",
    ),
    pytest.param(
        "cyrus",
        "imaps",
        "login: pc.example.net [198.51.100.82] gina plaintext+TLS User logged in SessionId=<cyrus-1-2-3>",
        dict(
            outcome="success", account="gina", source_ip="198.51.100.82", tls=True, session_id="cyrus-1-2-3"
        ),
        id="cyrus-login",
    ),
    # --- UW IMAP
    pytest.param(
        "uwimap",
        "imapd",
        "Login failed user=Hank auth=hank host=pc.example.net [198.51.100.90]",
        dict(outcome="failure", account="hank", source_ip="198.51.100.90", service="imap"),
        id="uwimap-login-failed",
    ),
    pytest.param(
        "uwimap",
        "imapd",
        "AUTHENTICATE LOGIN failure host=pc.example.net [198.51.100.92]",
        dict(outcome="failure", account=None, source_ip="198.51.100.92", auth_method="LOGIN"),
        id="uwimap-authenticate-failure",
    ),
    pytest.param(
        "uwimap",
        "ipop3d",
        "Login user=ivy host=[2001:db8::90] nmsgs=3/3",
        dict(outcome="success", account="ivy", source_ip="2001:db8::90", service="pop3"),
        id="uwimap-pop3-login",
    ),
    pytest.param(
        "uwimap",
        "imapd",
        "Authenticated user=ivy host=pc.example.net [198.51.100.91] mech=PLAIN",
        dict(outcome="success", account="ivy", auth_method="PLAIN"),
        id="uwimap-authenticated",
    ),
    pytest.param(
        "uwimap",
        "imapd",
        "Logout user=ivy host=pc.example.net [198.51.100.91]",
        dict(action="logout", outcome=None, account="ivy"),
        id="uwimap-logout",
    ),
    pytest.param(
        "uwimap",
        "imapd",
        "Login disabled user=root auth=root host=[203.0.113.4]",
        dict(outcome="disabled", account="root", source_ip="203.0.113.4"),
        id="uwimap-login-disabled",
    ),
    # --- cucipop
    pytest.param(
        "cucipop",
        "cucipop",
        "authentication failure jack 198.51.100.93",
        dict(outcome="failure", account="jack", source_ip="198.51.100.93", service="pop3"),
        id="cucipop-failure",
    ),
    # --- OpenSMTPD
    pytest.param(
        "opensmtpd",
        "smtpd",
        '0a1b2c3d4e5f6a7b smtp event=failed-command address=198.51.100.94 host=x.example.net command="AUTH PLAIN (...)" result="535 Authentication failed"',
        dict(
            outcome="failure", source_ip="198.51.100.94", auth_method="PLAIN", session_id="0a1b2c3d4e5f6a7b"
        ),
        id="opensmtpd-failed-auth-command",
    ),
    pytest.param(
        "opensmtpd",
        "smtpd",
        "2a1b2c3d4e5f6a7b smtp event=authentication user=Lee address=[2001:db8::95] host=z.example.net result=ok",
        dict(outcome="success", account="lee", source_ip="2001:db8::95"),
        id="opensmtpd-authentication-ok",
    ),
    pytest.param(
        "opensmtpd",
        "smtpd",
        '3a1b2c3d4e5f6a7b smtp event=failed-command address=198.51.100.96 host=z command="AUTH LOGIN" result="503 5.5.1 Invalid command: Command not supported"',
        dict(outcome="policy_refused", source_ip="198.51.100.96"),
        id="opensmtpd-auth-not-supported",
    ),
    # --- Sendmail
    pytest.param(
        "sendmail",
        "sm-mta",
        "AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=Kurt, relay=pc.example.net [198.51.100.97]",
        dict(
            outcome="failure",
            account="kurt",
            source_ip="198.51.100.97",
            auth_method="LOGIN",
            service="smtp",
            reason="authentication failure (-13) SASL(-13): authentication failure: checkpass failed",
        ),
        id="sendmail-auth-failure-with-user",
    ),
    pytest.param(
        "sendmail",
        "sendmail",
        "AUTH failure (PLAIN): user not found (-20) SASL(-20): user not found: no secret in database, relay=[2001:db8::97]",
        dict(outcome="unknown_user", account=None, source_ip="2001:db8::97", auth_method="PLAIN"),
        id="sendmail-auth-unknown-user",
    ),
    pytest.param(
        "sendmail",
        "sm-mta",
        "AUTH=server, relay=pc.example.net [198.51.100.98], authid=lars@example.org, mech=CRAM-MD5, bits=0",
        dict(
            outcome="success", account="lars@example.org", source_ip="198.51.100.98", auth_method="CRAM-MD5"
        ),
        id="sendmail-auth-server-success",
    ),
    # --- nginx mail proxy
    pytest.param(
        "nginx_mail",
        "nginx-mail",
        '2026/11/23 01:02:03 [info] 9#9: *120 client login failed: "Authentication credentials invalid" while in http auth state, client: 198.51.100.100 using starttls, server: 0.0.0.0:587, login: "Mia@example.org"',
        dict(
            outcome="failure",
            account="mia@example.org",
            source_ip="198.51.100.100",
            service="submission",
            tls=True,
            session_id="120",
            local_ip=None,
        ),
        id="nginx-login-failed",
    ),
    pytest.param(
        "nginx_mail",
        "nginx",
        '*121 client login failed: "AUTH not supported" while in http auth state, client: 2001:db8::100, server: [::]:25, login: "nora"',
        dict(outcome="policy_refused", account="nora", source_ip="2001:db8::100", service="smtp"),
        id="nginx-auth-on-port-25",
    ),
    pytest.param(
        "nginx_mail",
        "nginx",
        '*125 client login failed: "Temporary authentication failure (rate-limit)" while in http auth state, client: 198.51.100.103, server: 0.0.0.0:995, login: "pia@example.org"',
        dict(outcome="policy_refused", service="pop3"),
        id="nginx-rate-limited",
    ),
    pytest.param(
        "nginx_mail",
        "nginx",
        '*122 client logged in, client: 198.51.100.101, server: 192.0.2.8:10993, login: "olga@example.org", upstream: 192.0.2.5:143',
        dict(
            outcome="success",
            account="olga@example.org",
            source_ip="198.51.100.101",
            service="imap",
            local_ip="192.0.2.8",
        ),
        id="nginx-logged-in",
    ),
    # --- Zimbra
    pytest.param(
        "zimbra",
        None,
        "INFO  [qtp1-10:https://mail.example.org:7071/service/admin/soap/AuthRequest] [name=Quinn@example.org;oip=198.51.100.110;port=50001;ua=ZimbraWebClient;soapId=ab12;] SoapEngine - handler exception: authentication failed for [Quinn@example.org], invalid password",
        dict(
            outcome="failure",
            account="quinn@example.org",
            source_ip="198.51.100.110",
            service="webmail",
            reason="invalid password",
        ),
        id="zimbra-soap-invalid-password",
    ),
    pytest.param(
        "zimbra",
        None,
        "INFO  [qtp1-11:smtp://mta.example.org:7073/service/admin/soap/] [oip=198.51.100.111;oport=41000;oproto=smtp;soapId=ab13;] SoapEngine - handler exception: authentication failed for [rex], account not found",
        dict(
            outcome="unknown_user",
            account="rex",
            source_ip="198.51.100.111",
            source_port=41000,
            service="smtp",
        ),
        id="zimbra-smtp-account-not-found",
    ),
    pytest.param(
        "zimbra",
        None,
        "INFO  [ImapSSLServer-7] [name=tia@example.org;ip=192.0.2.20;oip=198.51.100.113;] security - cmd=Auth; account=tia@example.org; protocol=imap;",
        dict(outcome="success", account="tia@example.org", source_ip="198.51.100.113", service="imap"),
        id="zimbra-audit-success",
    ),
    pytest.param(
        "zimbra",
        None,
        "INFO  [qtp1-13:https://mail/service/soap/AuthRequest] [oip=2001:db8::113;ua=x;] security - cmd=Auth; account=uma@example.org; protocol=soap; error=authentication failed for [uma@example.org], account lockout;",
        dict(outcome="disabled", account="uma@example.org", source_ip="2001:db8::113", service="webmail"),
        id="zimbra-audit-lockout",
    ),
    # --- Exchange
    pytest.param(
        "exchange",
        None,
        '00000000000000A1,4,192.0.2.30:993,198.51.100.120:51000,Vera,120,40,30,authenticate,PLAIN,"R=""4 NO AUTHENTICATE failed."";Msg=""AuthFailed:LogonDenied,User: vera"";ErrMsg=AuthFailed:LogonDenied",',
        dict(
            outcome="failure",
            account="vera",
            source_ip="198.51.100.120",
            source_port=51000,
            service="imap",
            auth_method="PLAIN",
            reason="AuthFailed:LogonDenied",
        ),
        id="exchange-imap-failed",
    ),
    pytest.param(
        "exchange",
        None,
        '2026-11-23T01:02:03.456Z,00000000000000A2,1,192.0.2.30:110,[2001:db8::121]:51001,wes,190,20,60,auth, PLAIN,"R=""-ERR Authentication failure: unknown user name or bad password."";Msg=""AuthFailed:LogonDenied,User: wes"";ErrMsg=AuthFailed:LogonDenied",',
        dict(outcome="failure", account="wes", source_ip="2001:db8::121", service="pop3"),
        id="exchange-pop3-failed-with-stamp",
    ),
    pytest.param(
        "exchange",
        "00000000000000A4,3,192.0.2.30",
        '993,198.51.100.125:51003,yan,100,30,30,login,,"R=""a2 NO LOGIN failed."";ErrMsg=AuthFailed:LogonDenied",',
        dict(outcome="failure", account="yan", source_ip="198.51.100.125", service="imap"),
        id="exchange-record-split-at-an-endpoint-colon",
    ),
    pytest.param(
        "exchange",
        None,
        '00000000000000A3,2,192.0.2.30:143,198.51.100.124:51002,xena,100,30,30,login,,"R=""a1 OK LOGIN completed."";Msg=""Proxy:mbx01:1993:SSL""",',
        dict(outcome="success", account="xena", service="imap"),
        id="exchange-imap-login-ok",
    ),
    pytest.param(
        "exchange",
        None,
        "MX01\\Client Frontend MX01,08DB00000000AAAA,7,192.0.2.30:587,198.51.100.122:53000,>,535 5.7.3 Authentication unsuccessful,",
        dict(
            outcome="failure",
            account=None,
            source_ip="198.51.100.122",
            service="submission",
            session_id="08DB00000000AAAA",
        ),
        id="exchange-smtp-535",
    ),
    pytest.param(
        "exchange",
        None,
        "MX01\\Client Frontend MX01,08DB00000000AAAB,7,192.0.2.30:587,198.51.100.123:53001,>,235 2.7.0 Authentication successful,",
        dict(outcome="success", source_ip="198.51.100.123"),
        id="exchange-smtp-235",
    ),
    # --- Mailu
    pytest.param(
        "mailu",
        None,
        "WARNING in limiter: Authentication attempt from 198.51.100.130 has been rate-limited.",
        dict(outcome="policy_refused", account=None, source_ip="198.51.100.130"),
        id="mailu-rate-limited",
    ),
    pytest.param(
        "mailu",
        None,
        "[2026-11-23 01:02:03,444] WARNING in limiter: Authentication attempt from 2001:db8::130 for Yuri@example.org has been rate-limited.",
        dict(outcome="policy_refused", account="yuri@example.org", source_ip="2001:db8::130"),
        id="mailu-rate-limited-user-with-stamp",
    ),
    # --- Roundcube / SOGo
    pytest.param(
        "webmail",
        "roundcube",
        "<x1y2z3> Failed login for Zoe@example.org from 198.51.100.140 in session x1y2z3a4 (error: 0)",
        dict(
            daemon="roundcube",
            outcome="failure",
            account="zoe@example.org",
            source_ip="198.51.100.140",
            service="webmail",
            session_id="x1y2z3a4",
        ),
        id="roundcube-failed-login",
    ),
    pytest.param(
        "webmail",
        "roundcube",
        "<x1y2z3> Successful login for zoe@example.org (ID: 12) from 10.0.0.5(X-Forwarded-For: 198.51.100.141, 10.0.0.5) in session x1y2z3a4",
        dict(outcome="success", account="zoe@example.org", source_ip="198.51.100.141"),
        id="roundcube-success-behind-proxy",
    ),
    pytest.param(
        "webmail",
        "roundcube",
        "<x1y2z3> IMAP Error: Login failed for adam@example.org against imap.example.org from 198.51.100.142. AUTHENTICATE PLAIN: Authentication failed. in /srv/rc/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)",
        dict(
            outcome="failure",
            account="adam@example.org",
            source_ip="198.51.100.142",
            reason="AUTHENTICATE PLAIN: Authentication failed.",
        ),
        id="roundcube-imap-error",
    ),
    pytest.param(
        "webmail",
        "sogod",
        "SOGoRootPage Login from '198.51.100.143' for user 'Beth' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
        dict(daemon="sogo", outcome="failure", account="beth", source_ip="198.51.100.143"),
        id="sogo-failed",
    ),
    pytest.param(
        "webmail",
        "sogod",
        "SOGoRootPage successful login from '198.51.100.144, 10.0.0.7' for user 'beth' - expire: -1  grace: -1",
        dict(daemon="sogo", outcome="success", source_ip="198.51.100.144"),
        id="sogo-success",
    ),
]


@pytest.mark.parametrize(("name", "program", "message", "want"), EVENTS)
def test_event_lines(name: str, program: str | None, message: str, want: dict) -> None:
    assert claimed_by(program, message) == name
    row = parse_one(name, program, message)
    assert row[KIND] == want.pop(KIND, "event")
    want.setdefault("action", "login")
    for column, value in want.items():
        assert row[column] == value, column
    assert row[C.ATTEMPTS] == 1
    assert row[C.TIMESTAMP] == T0 and row[C.LINE_NUMBER] == 1 and row[C.SOURCE_FILE] == "mail.log"


NOISE = [
    (
        "exim",
        "exim",
        "H=(desk) [198.51.100.8]:1234 F=<a@example.org> rejected RCPT <c@example.net>: relay not permitted",
        "noise:reject",
    ),
    (
        "exim",
        "exim",
        "1kXyZa-000Abc-Q1 => d@example.net R=dnslookup T=remote_smtp H=mx.example.net [192.0.2.40]",
        "noise:delivery",
    ),
    (
        "exim",
        "exim",
        "1kXyZa-000Abc-Q2 <= bounce@example.net H=mx.example.net [192.0.2.41]:25 P=esmtps S=900",
        "noise:receive",
    ),
    ("exim", None, "1kXyZa-000Abc-Q1 Completed", "noise:delivery"),
    ("exim", "exim", "Start queue run: pid=4411", "noise:daemon"),
    (
        "uwimap",
        "imapd",
        "pam_unix(imap:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=198.51.100.12  user=ann",
        "noise:pam",
    ),
    (
        "exim",
        "exim",
        'SMTP call from (desk) [198.51.100.8]:4100 dropped: too many syntax or protocol errors (last command was "RCPT TO:<x@example.org>")',
        "noise:reject",
    ),
    (
        "exim",
        "exim",
        'SMTP call from (desk) [198.51.100.8]:4100 dropped: too many syntax or protocol errors (last command was "AUTHX")',
        "noise:reject",
    ),
    ("exim", "exim", "H=(x) [198.51.100.9] rejected AUTH: sorry, try the submission port", "noise:reject"),
    ("courier", "imapd", "Connection, ip=[::ffff:198.51.100.62]", "noise:connect"),
    ("courier", "imapd", "Disconnected, ip=[::ffff:198.51.100.62], time=0", "noise:disconnect"),
    (
        "courier",
        "courieresmtpd",
        'error,relay=::ffff:203.0.113.70,msg="513 Relaying denied.",cmd: RCPT TO:<x@example.net>',
        "noise:reject",
    ),
    ("cyrus", "imaps", "imaps TLS negotiation failed: [198.51.100.83]", "noise:tls"),
    ("cyrus", "imap", "accepted connection", "noise:connect"),
    ("uwimap", "imapd", "imap service init from 198.51.100.91", "noise:connect"),
    (
        "uwimap",
        "imapd",
        "Command stream end of file while reading line user=ivy host=[198.51.100.91]",
        "noise:disconnect",
    ),
    (
        "opensmtpd",
        "smtpd",
        "1a1b2c3d4e5f6a7b smtp connected address=198.51.100.95 host=y.example.net",
        "noise:connect",
    ),
    ("opensmtpd", "smtpd", "1a1b2c3d4e5f6a7b smtp disconnected reason=quit", "noise:disconnect"),
    (
        "sendmail",
        "sm-mta",
        "ruleset=check_rcpt, arg1=<x@example.net>, relay=[198.51.100.99], reject=550 5.7.1 <x@example.net>... Relaying denied",
        "noise:reject",
    ),
    (
        "sendmail",
        "sm-mta",
        "[198.51.100.99] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA",
        "noise:connect",
    ),
    (
        "sendmail",
        "sm-mta",
        "STARTTLS=server, relay=[198.51.100.99], version=TLSv1.3, verify=NO, bits=256",
        "noise:tls",
    ),
    ("nginx_mail", "nginx", "*124 client 192.0.2.9:4444 connected to 0.0.0.0:25", "noise:connect"),
    (
        "nginx_mail",
        "nginx",
        "*124 proxied session done, client: 198.51.100.102, server: 0.0.0.0:25",
        "noise:session_end",
    ),
    (
        "nginx_mail",
        "nginx",
        "*123 client logged in, client: 192.0.2.60, server: 0.0.0.0:25",
        "noise:inbound_smtp",
    ),
    (
        "nginx_mail",
        "nginx",
        '198.51.100.200 - - [23/Nov/2026:03:14:15 +0000] "GET /admin HTTP/1.1" 403 10 "-" "probe"',
        "noise:http",
    ),
    (
        "zimbra",
        None,
        "WARN  [qtp1-12:smtp://mta:7073/service/admin/soap/] [name=sam@example.org;oip=198.51.100.112;oproto=smtp;] SoapEngine - handler exception",
        "noise:soap_exception",
    ),
    ("zimbra", None, "INFO  [MailboxPurge] [] purge - Purging messages.", "noise:other"),
    (
        "exchange",
        None,
        "MX01\\Client Frontend MX01,08DB00000000AAAB,3,192.0.2.30:587,198.51.100.123:53001,<,EHLO pc,",
        "noise:protocol",
    ),
    ("mailu", None, "INFO in start: Starting the admin service", "noise:info"),
    ("webmail", "roundcube", "PHP Warning: something went sideways", "noise:error"),
]


@pytest.mark.parametrize(("name", "program", "message", "kind"), NOISE, ids=[f"{n[0]}-{n[3]}" for n in NOISE])
def test_noise_lines_stay_noise(name: str, program: str | None, message: str, kind: str) -> None:
    assert claimed_by(program, message) == name
    row = parse_one(name, program, message)
    assert row[KIND] == kind
    assert row[C.ACTION] is None and row[C.SOURCE_IP] is None


UNPARSED = [
    ("exim", "exim", "something odd about authentication happened"),
    ("cyrus", "imap", "a login-ish line nobody has seen before"),
    ("zimbra", None, "INFO  [ImapServer-1] [ip=198.51.100.9;] imap - login failed in a new way"),
]


@pytest.mark.parametrize(("name", "program", "message"), UNPARSED, ids=[u[0] for u in UNPARSED])
def test_unknown_auth_looking_lines_are_quarantined(name: str, program: str | None, message: str) -> None:
    assert parse_one(name, program, message)[KIND] == "unparsed"


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("httpd", "user login page served"),
        ("sshd", "Failed password for root from 198.51.100.1 port 22 ssh2"),
        (None, "just some text"),
    ],
)
def test_foreign_lines_are_not_claimed(program: str | None, message: str) -> None:
    assert claimed_by(program, message) not in MINE


PRETEST_LINES = [(v[1], v[2]) for v in (getattr(e, "values", e) for e in EVENTS + NOISE + UNPARSED)] + [
    ("sshd", "Failed password for root from 198.51.100.1 port 22 ssh2"),
    ("CRON", "(root) CMD (run-parts /etc/cron.hourly)"),
    ("kernel", "[12345.678] eth0: link up"),
    ("app", "badlogin: [198.51.100.1] plain kim SASL(-13): authentication failure"),
    ("proxy", '*12 client login failed: "Authentication credentials invalid"'),
]


@pytest.mark.parametrize("name", MINE)
def test_pretest_passes_every_line_the_parser_claims(name: str) -> None:
    """The cheap pre-test (program name, message shape) is a superset of the claims: a line it
    rejects would be counted as unclaimed without being offered to the parser."""
    parser = get(name)
    frame = envelope(PRETEST_LINES)
    got = frame.select(
        claims=parser.claims().fill_null(False), pre=registry.pretest((parser,)).fill_null(False)
    )
    assert got["claims"].any()
    assert not (got["claims"] & ~got["pre"]).any()


def test_pretest_rejects_other_programs() -> None:
    tail = parsers()[2:]
    lines = [
        ("sshd", "Failed password for root"),
        ("CRON", "(root) CMD (x)"),
        ("kernel", "[12345.678] eth0: link up"),
        ("nginx", "x"),
        (None, "x"),
    ]
    assert envelope(lines).select(registry.pretest(tail)).to_series().to_list() == [False] * 3 + [True] * 2


def test_uwimap_and_courier_share_imapd_without_stealing() -> None:
    assert claimed_by("imapd", "LOGIN FAILED, user=kim, ip=[::ffff:198.51.100.3]") == "courier"
    assert claimed_by("imapd", "Login failed user=kim auth=kim host=[198.51.100.3]") == "uwimap"


def test_opensmtpd_takes_the_address_from_the_session_and_counts_once() -> None:
    frame = envelope(
        [
            ("smtpd", "1a1b2c3d4e5f6a7b smtp connected address=198.51.100.95 host=y.example.net"),
            ("smtpd", "1a1b2c3d4e5f6a7b smtp authentication user=Kate@example.org result=permfail"),
            (
                "smtpd",
                '1a1b2c3d4e5f6a7b smtp failed-command command="AUTH LOGIN (password)" result="535 Authentication failed"',
            ),
        ]
    )
    out = get("opensmtpd").parse(frame.lazy()).collect().sort(C.LINE_NUMBER)
    assert out[KIND].to_list() == ["noise:connect", "event", "noise:auth_reply"]
    event = out.row(1, named=True)
    assert (event[C.ACCOUNT], event[C.SOURCE_IP], event[C.OUTCOME]) == (
        "kate@example.org",
        "198.51.100.95",
        "failure",
    )


@pytest.mark.parametrize("name", MINE)
def test_every_parser_is_registered_documented_and_keeps_rows(name: str) -> None:
    parser = get(name)
    assert parser.doc
    empty = parser.parse(envelope([]).lazy()).collect()
    assert public(empty.schema) == OUTPUT_SCHEMA and empty.height == 0
    mixed = envelope([(None, "x"), ("exim", "y auth"), ("imapd", "z")])
    out = parser.parse(mixed.lazy()).collect()
    assert out.height == 3
    assert sorted(out[C.LINE_NUMBER].to_list()) == [1, 2, 3]
    assert all(k in ("event", "unparsed") or k.startswith("noise:") for k in out[KIND].to_list())


E2E_LINES = [
    "Nov 22 03:14:15 mx1 exim[2001]: plain_srv authenticator failed for (laptop) [198.51.100.23]:40122: 535 Incorrect authentication data (set_id=anna@example.org)",
    "2026-11-22 03:14:16 login authenticator failed for (desk) [198.51.100.24]:40123: 535 Incorrect authentication data (set_id=bert)",
    "2026-11-22 03:14:16.250 [4242] 1kXyZa-000Abc-Q1 <= carl@example.org H=(pc) [198.51.100.4]:51000 I=[192.0.2.1]:587 P=esmtpsa X=TLS1.3:x:256 CV=no A=dovecot_plain:carl@example.org S=2048 id=m1@example.org",
    "Nov 22 03:14:17 mx1 imapd-ssl[300]: LOGIN FAILED, user=dora@example.org, ip=[::ffff:198.51.100.61]",
    "Nov 22 03:14:18 mx1 cyrus/imaps[301]: badlogin: pc.example.net [198.51.100.81] plaintext frank SASL(-13): authentication failure: checkpass failed",
    "Nov 22 03:14:19 mx1 imapd[302]: Login failed user=hank auth=hank host=pc.example.net [198.51.100.90]",
    'Nov 22 03:14:20 mx1 smtpd[303]: 0a1b2c3d4e5f6a7b smtp event=failed-command address=198.51.100.94 host=x.example.net command="AUTH PLAIN (...)" result="535 Authentication failed"',
    '2026/11/22 03:14:21 [info] 9#9: *120 client login failed: "Authentication credentials invalid" while in http auth state, client: 198.51.100.100, server: 0.0.0.0:993, login: "mia@example.org"',
    "2026-11-22 03:14:22,456 INFO  [qtp1-10:https://mail.example.org:7071/service/soap/AuthRequest] [name=quinn@example.org;oip=198.51.100.110;ua=ZimbraWebClient;] SoapEngine - handler exception: authentication failed for [quinn@example.org], invalid password",
    '2026-11-22T03:14:23.456Z,00000000000000A1,4,192.0.2.30:993,198.51.100.120:51000,vera,120,40,30,authenticate,PLAIN,"R=""4 NO AUTHENTICATE failed."";ErrMsg=AuthFailed:LogonDenied",',
    "[2026-11-22 03:14:24,444] WARNING in limiter: Authentication attempt from 198.51.100.130 has been rate-limited.",
    "Nov 22 03:14:25 web roundcube: <x1y2z3> Failed login for zoe@example.org from 198.51.100.140 in session x1y2z3a4 (error: 0)",
    "Nov 22 03:14:26 web sogod [4321]: SOGoRootPage Login from '198.51.100.143' for user 'beth' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
    "Nov 22 03:14:27 mx1 cucipop[304]: authentication failure jack 198.51.100.93",
    "Nov 22 03:14:28 mx1 exim[2001]: 1kXyZa-000Abc-Q1 => d@example.net R=dnslookup T=remote_smtp H=mx.example.net [192.0.2.40]",
]


def test_end_to_end_every_daemon_through_ingest(tmp_path) -> None:
    events, result = run(tmp_path, E2E_LINES, year=2026)
    got = {r[C.LINE_NUMBER]: r for r in events.iter_rows(named=True)}
    want_ips = {
        1: "198.51.100.23", 2: "198.51.100.24", 3: "198.51.100.4", 4: "198.51.100.61", 5: "198.51.100.81",
        6: "198.51.100.90", 7: "198.51.100.94", 8: "198.51.100.100", 9: "198.51.100.110", 10: "198.51.100.120",
        11: "198.51.100.130", 12: "198.51.100.140", 13: "198.51.100.143", 14: "198.51.100.93",
    }  # fmt: skip
    assert {n: got[n][C.SOURCE_IP] for n in got} == want_ips
    assert got[3][C.ACTION] == "send" and got[13][C.DAEMON] == "sogo"
    assert got[2][C.TIMESTAMP] == datetime(2026, 11, 22, 3, 14, 16, tzinfo=UTC)
    assert result.quarantine.height == 0
    assert sum(result.noise.values()) == 1


def test_exim_with_dovecot_sasl_counts_each_attempt_once(tmp_path) -> None:
    lines = [
        "Nov 22 03:14:15 mx1 exim[2001]: dovecot_plain authenticator failed for (pc) [198.51.100.33]:40122: 535 Incorrect authentication data (set_id=ella@example.org)",
        "Nov 22 03:14:15 mx1 dovecot: auth: passwd-file(ella@example.org,198.51.100.33,<QwErTy12>): Password mismatch",
        "Nov 22 03:14:19 mx1 dovecot: auth: passwd-file(ghost@example.org,198.51.100.34,<QwErTy13>): unknown user",
        "Nov 22 03:14:19 mx1 exim[2001]: dovecot_login authenticator failed for (pc) [198.51.100.34]:40123: 535 Incorrect authentication data (set_id=ghost@example.org)",
    ]
    events, result = run(tmp_path, lines, year=2026)
    rows = {r[C.LINE_NUMBER]: r for r in events.iter_rows(named=True)}
    assert sorted(rows) == [1, 4]
    assert (rows[1][C.DAEMON], rows[1][C.OUTCOME], rows[1][C.REASON]) == (
        "exim",
        "failure",
        "Password mismatch",
    )
    assert (rows[4][C.ACCOUNT], rows[4][C.OUTCOME]) == ("ghost@example.org", "unknown_user")
    assert result.noise.get("noise:merged") == 2


@pytest.mark.parametrize(
    ("before", "merged"),
    [
        pytest.param([], 0, id="drop-alone-counts-once"),
        pytest.param(
            [
                'SMTP protocol error in "AUTH LOGIN" H=(pc) [198.51.100.35]:4000 AUTH command used when not advertised'
            ]
            * 2,
            1,
            id="after-protocol-errors",
        ),
        pytest.param(
            [
                "plain authenticator failed for (pc) [198.51.100.35]:4000: 535 Incorrect authentication data (set_id=x)"
            ],
            1,
            id="after-authenticator-failure",
        ),
        pytest.param(
            [
                'SMTP protocol error in "AUTH LOGIN" H=(pc) [198.51.100.36]:4000 AUTH command used when not advertised'
            ],
            0,
            id="another-client",
        ),
    ],
)
def test_exim_dropped_call_closes_attempts_already_counted(tmp_path, before, merged) -> None:
    """A call dropped after AUTH errors is one refused attempt only where no AUTH line of the client
    precedes it."""
    drop = 'SMTP call from (pc) [198.51.100.35]:4000 dropped: too many syntax or protocol errors (last command was "AUTH LOGIN")'
    lines = [f"Nov 22 03:14:1{i} mx1 exim[2001]: {m}" for i, m in enumerate([*before, drop])]
    events, result = run(tmp_path, lines, year=2026)
    assert len(events) == len(before) + 1 - merged
    assert result.noise.get("noise:merged", 0) == merged


TEMPLATES = [
    ("exim", "exim", "plain authenticator failed for (pc) [{ip}]:4000: 535 Incorrect authentication data (set_id={user})"),
    ("courier", "imapd", "LOGIN FAILED, user={user}, ip=[{ip}]"),
    ("cyrus", "imaps", "badlogin: pc.example.net [{ip}] plaintext {user} SASL(-13): authentication failure: checkpass failed"),
    ("uwimap", "imapd", "Login failed user={user} auth={user} host=pc.example.net [{ip}]"),
    ("sendmail", "sm-mta", "AUTH failure (LOGIN): authentication failure (-13) SASL(-13): x, user={user}, relay=[{ip}]"),
    ("nginx_mail", "nginx", '*9 client login failed: "Authentication credentials invalid" while in http auth state, client: {ip}, server: 0.0.0.0:993, login: "{user}"'),
    ("zimbra", None, "INFO  [ImapServer-1] [oip={ip};] security - cmd=Auth; account={user}; protocol=imap;"),
    ("webmail", "roundcube", "<ab12> Failed login for {user} from {ip} in session ab12cd (error: 0)"),
]  # fmt: skip


@settings(max_examples=20, deadline=None)
@given(
    template=st.sampled_from(TEMPLATES),
    address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    user=st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,12}(@[a-z]{1,8}\.org)?", fullmatch=True),
    mapped=st.booleans(),
)
def test_any_address_and_account_come_out_canonical(template, address, user, mapped) -> None:
    name, program, text = template
    ip = str(address)
    if mapped and address.version == 4:
        ip = f"::ffff:{address}"
    row = parse_one(name, program, text.format(ip=ip, user=user))
    assert row[KIND] == "event"
    plain = address.ipv4_mapped if address.version == 6 and address.ipv4_mapped else address
    assert row[C.SOURCE_IP] == str(plain)
    assert row[C.ACCOUNT] == user.lower()


WILD_SHAPES = [
    pytest.param(
        "[22-Nov-2026 03:14:15 +0100]: FAILED login for hugo from 198.51.100.150",
        dict(daemon="roundcube", outcome="failure", account="hugo", source_ip="198.51.100.150"),
        id="roundcube-own-log-old-wording",
    ),
    pytest.param(
        "[22-Nov-2026 03:14:15 +0100]: <k2p9> IMAP Error: Login failed for hugo from 198.51.100.151. AUTHENTICATE PLAIN: Authentication failed. in /srv/rc/rcube_imap.php on line 184",
        dict(daemon="roundcube", outcome="failure", account="hugo", source_ip="198.51.100.151"),
        id="roundcube-own-log-imap-error-without-against",
    ),
    pytest.param(
        "Nov 22 03:14:15 sogod [2681]: SOGoRootPage Login from '198.51.100.152' for user 'ines' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
        dict(daemon="sogo", outcome="failure", account="ines", source_ip="198.51.100.152"),
        id="sogo-space-before-pid-no-host",
    ),
    pytest.param(
        "Nov 22 03:14:15 mx1 sm-mta[5133]: 4AM3EFa1005133: pc.example.net [198.51.100.153] (may be forged): possible SMTP attack: command=AUTH, count=5",
        dict(daemon="sendmail", outcome="failure", account=None, source_ip="198.51.100.153", attempts=5),
        id="sendmail-too-many-auth-commands",
    ),
    pytest.param(
        "Nov 22 03:14:15 mx1 sendmail[16665]: 4AM3EFa1016765: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=jon, relay=[198.51.100.154]",
        dict(daemon="sendmail", outcome="failure", account="jon", source_ip="198.51.100.154"),
        id="sendmail-failure-behind-queue-id",
    ),
    pytest.param(
        '2026-11-22 03:14:15 SMTP protocol error in "aUtH lOgIn" H=(pc) [198.51.100.155] AUTH command used when not advertised',
        dict(daemon="exim", outcome="policy_refused", source_ip="198.51.100.155"),
        id="exim-protocol-error-any-case",
    ),
]


@pytest.mark.parametrize(("line", "want"), WILD_SHAPES)
def test_shapes_seen_in_the_wild(tmp_path, line: str, want: dict) -> None:
    events, result = run(tmp_path, [line], year=2026)
    assert events.height == 1, (result.noise, result.quarantine)
    row = events.row(0, named=True)
    for key, value in want.items():
        assert row[key] == value, key


def test_sendmail_process_title_is_sendmail(tmp_path) -> None:
    line = "Nov 22 03:14:15 mx1 sm-acceptingconnections[3205]: 4AM3EFa1032053: pc.example.net [198.51.100.156]: possible SMTP attack: command=AUTH, count=5"
    events, _ = run(tmp_path, [line], year=2026)
    assert events.select(C.DAEMON, C.SOURCE_IP, C.ATTEMPTS).rows() == [("sendmail", "198.51.100.156", 5)]
