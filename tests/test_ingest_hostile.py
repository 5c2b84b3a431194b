"""Hostile input: user names (and other client-written fields) cannot move the address, the account
or the outcome that a parser reads; lines it cannot read safely are quarantined.

Every line here is written for these tests (documentation address ranges, made-up accounts),
modelled on the formats the daemons write; the client-written field is ``{u}``.
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.ingest.registry import KIND, get, parsers
from detector.ingest.screen import escape_controls, screen, valid_ip
from detector.schema import C
from tests.ingest_helpers import envelope, run

REAL = "198.51.100.7"

# parser -> (program, message with {u} where the client's name goes); the address is REAL
TEMPLATES: dict[str, list[tuple[str | None, str]]] = {
    "dovecot": [
        ("dovecot", "imap-login: Login: user=<{u}>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, mpid=7, TLS, session=<AbC+12/x>"),
        ("dovecot", "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{u}>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, TLS, session=<AbC+12/x>"),
        ("dovecot", "auth: passwd-file({u},198.51.100.7,<AbC+12/x>): Password mismatch"),
        ("dovecot", "auth-worker(12): pam({u},198.51.100.7,<AbC+12/x>): pam_authenticate() failed: Authentication failure (password mismatch?)"),
        ("dovecot", "pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser={u} rhost=198.51.100.7  user={u}"),
        ("dovecot", "imap-login: proxy({u}): Login failed to 192.0.2.10:143: [AUTHENTICATIONFAILED] Authentication failed.: user=<{u}>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, TLS, session=<AbC+12/x>"),
    ],
    "postfix": [
        ("postfix/submission/smtpd", "warning: unknown[198.51.100.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={u}"),
        ("postfix/smtpd", "4F1AB2C3D4: client=pc.example.net[198.51.100.7]:50000, sasl_method=PLAIN, sasl_username={u}"),
    ],
    "exim": [
        ("exim", "dovecot_plain authenticator failed for ({u}) [198.51.100.7]:40122: 535 Incorrect authentication data (set_id={u})"),
        ("exim", 'SMTP call from (pc) [198.51.100.7]:40122 dropped: too many syntax or protocol errors (last command was "AUTH LOGIN {u}")'),
    ],
    "courier": [
        ("imapd-ssl", "LOGIN FAILED, user={u}, ip=[::ffff:198.51.100.7]"),
        ("imapd", "LOGIN, user={u}, ip=[::ffff:198.51.100.7], port=[40111], protocol=IMAP"),
    ],
    "cyrus": [
        ("cyrus/imap", "badlogin: client.example.net [198.51.100.7] plaintext {u} SASL(-13): authentication failure: checkpass failed"),
    ],
    "uwimap": [
        ("imapd", "Login failed user={u} auth={u} host=pc.example.net [198.51.100.7]"),
        ("imapd", "Login user={u} host=pc.example.net [198.51.100.7]"),
    ],
    "cucipop": [("cucipop", "authentication failure {u} 198.51.100.7")],
    "opensmtpd": [
        ("smtpd", "2a1b2c3d4e5f6a7b smtp event=authentication user={u} address=198.51.100.7 host=z.example.net result=permfail"),
    ],
    "sendmail": [
        ("sendmail", "AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user={u}, relay=pc.example.net [198.51.100.7]"),
    ],
    "nginx_mail": [
        ("nginx", '*120 client login failed: "Authentication credentials invalid" while in http auth state, client: 198.51.100.7, server: 0.0.0.0:993, login: "{u}"'),
    ],
    "zimbra": [
        (None, "INFO  [ImapSSLServer-7] [name={u};oip=198.51.100.7;] security - cmd=Auth; account={u}; protocol=imap; error=authentication failed for [{u}], invalid password;"),
    ],
    "exchange": [
        (None, '00000000000000A1,4,192.0.2.30:993,198.51.100.7:51000,{u},120,40,30,authenticate,PLAIN,"R=""4 NO AUTHENTICATE failed."";ErrMsg=AuthFailed:LogonDenied",'),
    ],
    "solid_pop3d": [
        ("solid-pop3d", "authentication failed for user {u} - 198.51.100.7"),
        ("solid-pop3d", "authentication failed: no such user: {u} - 198.51.100.7"),
    ],
    "domino": [
        ("smtp", "{u} [198.51.100.7] authentication failure using internet password"),
        ("domino-smtp", "SMTP Server: Authentication failed for user {u} ; connecting host 198.51.100.7"),
    ],
    "webmail_other": [
        ("HORDE", '[error] [horde] FAILED LOGIN for {u} [198.51.100.7] to Horde [on line 116 of "/srv/horde/login.php"]'),
        ("squirrelmail", "[LOGIN_ERROR] {u} (example.org) from 198.51.100.7: Unknown user or password incorrect."),
        ("tine20", "WARN (4): Tinebase_Controller::login::106 Login with username {u} from 198.51.100.7 failed (-1)!"),
        ("groupoffice", 'LOGIN FAILED for user: "{u}" from IP: 198.51.100.7'),
    ],
    "kerio": [(None, "Failed SMTP login from 198.51.100.7 with SASL method CRAM-MD5.{u}")],  # no account
    "oracleims": [
        (None, '<co ts="2026-11-22T03:14:15.99" pi="72aa.17f0.1" sc="tcp_local" dr="+" ac="U" tr="TCP|192.0.2.30|25|198.51.100.7|4299" ap="SMTP" mi="Bad password" us="{u}" di="535 5.7.8 Bad username or password (Authentication failed)."/>'),
    ],
    "perdition": [
        ("perdition.imaps", 'Auth: 198.51.100.7:2274->192.0.2.9:993 client-secure=ssl authorisation_id=NONE authentication_id="{u}" server="imap.example.org:993" protocol=IMAP4S server-secure=ssl status="failed: Re-Authentication Failure"'),
    ],
    "openwebmail": [(None, "[72926] (198.51.100.7) {u} - login error - auth_unix.pl, ret -4, Password incorrect")],
    "mailu": [(None, "WARNING in limiter: Authentication attempt from 198.51.100.7 for {u} has been rate-limited.")],
    "webmail": [
        ("roundcube", "<x1y2z3> Failed login for {u} from 198.51.100.7 in session x1y2z3a4 (error: 0)"),
        ("roundcube", "<x1y2z3> IMAP Error: Login failed for {u} against imap.example.org from 198.51.100.7. AUTHENTICATE PLAIN: Authentication failed. in /srv/rc/rcube_imap.php on line 211"),
        ("sogod", "SOGoRootPage Login from '198.51.100.7' for user '{u}' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0"),
    ],
}  # fmt: skip

NO_ACCOUNT = {("kerio", 0), ("exim", 1)}
"""Templates whose line names no account: the client's text (trailing junk) must change nothing."""

MARKERS = [
    "rip=", "lip=", "0.0.0.0/0", "10.0.0.0,", ", ", "<", ">", "[", "]", "[0.0.0.0]", "(", ")", "): ",
    "from ", " from 0.0.0.0", "host=", " host=[0.0.0.0]", "ip=[", "ip=", ";oip=0.0.0.0;", " rhost=",
    "user=", "auth=", "Login: ", "Successful login for ", "client logged in, ", "AUTH=server, relay=",
    " result=ok", "SOGoRootPage successful login from '", "(auth failed, 40 attempts in 1 secs)",
    ", sasl_username=", "(set_id=", " H=", "relay=", "authid=", "login: ", "Password mismatch",
    "client: 0.0.0.0", "in session", "against", "for user '", '"', "'", " ", ":", ",", ";", "=",
    "\n", "\t", "\x1b[31m", "a", "B", "7", "@", ".",
]  # fmt: skip
"""Words a client can put in a name that are this project's daemons' own markers."""

NAMES = st.lists(st.sampled_from(MARKERS), min_size=1, max_size=6).map(
    lambda parts: "u" + "".join(parts) + "z"
)


def written(parser: str, name: str) -> str:
    """The name as the daemon writes it: Dovecot replaces control characters by ``?``, Exchange
    quotes a CSV field that needs it."""
    if parser == "dovecot":
        return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in name)
    if parser == "exchange" and any(c in name for c in ',"\n'):
        return '"' + name.replace('"', '""') + '"'
    return name


def parsed(parser: str, rows: list[tuple[str | None, str]]) -> tuple[pl.DataFrame, pl.Series]:
    out = get(parser).parse(envelope(rows).lazy()).collect()
    out, reason = screen(out.sort(C.LINE_NUMBER))
    return out, reason


def test_every_registered_parser_has_hostile_templates() -> None:
    missing = {p.name for p in parsers()} - set(TEMPLATES)
    assert not missing, f"parsers without hostile-name property tests: {sorted(missing)}"


CASES = [(name, i) for name, lines in TEMPLATES.items() for i in range(len(lines))]


@pytest.mark.parametrize(("parser", "index"), CASES)
def test_plain_name_is_read(parser: str, index: int) -> None:
    program, text = TEMPLATES[parser][index]
    out, reason = parsed(parser, [(program, text.replace("{u}", "alice"))])
    assert reason[0] is None and out[KIND][0] == "event", out.row(0, named=True)
    assert out[C.SOURCE_IP][0] == REAL
    assert out[C.ACCOUNT][0] == (None if (parser, index) in NO_ACCOUNT else "alice")


def _check(parser: str, index: int, names: list[str], *, accounts: bool) -> None:
    program, text = TEMPLATES[parser][index]
    rows = [(program, text.replace("{u}", "alice"))]
    rows += [(program, text.replace("{u}", written(parser, n))) for n in names]
    out, reason = parsed(parser, rows)
    plain = out.row(0, named=True)
    want = pl.select(escape_controls(pl.Series([written(parser, n).lower() for n in names]))).to_series()
    for i, name in enumerate(names, start=1):
        if reason[i] is not None:
            continue
        row = out.row(i, named=True)
        assert row[KIND] == "event", (name, row)
        assert row[C.SOURCE_IP] == plain[C.SOURCE_IP], (name, row)
        assert row[C.OUTCOME] == plain[C.OUTCOME], (name, row)
        if accounts:
            expected = None if (parser, index) in NO_ACCOUNT else want[i - 1]
            assert row[C.ACCOUNT] == expected, (name, row)


@pytest.mark.parametrize(("parser", "index"), CASES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=1, max_size=8))
def test_hostile_name_moves_no_address_or_outcome(parser: str, index: int, names: list[str]) -> None:
    """For names drawn from the daemons' markers, the line gives the plain line's address and
    outcome, or it is quarantined."""
    _check(parser, index, names, accounts=False)


@pytest.mark.parametrize(("parser", "index"), CASES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=1, max_size=8))
def test_hostile_name_is_the_account(parser: str, index: int, names: list[str]) -> None:
    """... and the account is the whole name (escaped, lower case), or the line is quarantined."""
    _check(parser, index, names, accounts=True)


@pytest.mark.parametrize("name", ["u10.0.0.0,,<z", "u,,<z", "a,<b", "a,,", "u,<x>,"])
def test_a_name_cannot_make_a_passdb_attempt_local(name: str) -> None:
    """Regression (found by the property test above): with a lazy user group, ``u,,<z`` ended the
    user early, read an empty address and turned the remote attempt into local noise."""
    _check("dovecot", 2, [name], accounts=True)


# --- the attacks of issue 12, end to end through ingestion

ATTACKS = [
    pytest.param(
        "Nov 22 03:14:15 mx1 dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u1@example.org rip=0.0.0.0/0,>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, session=<AbC>",
        id="dovecot-login-rip",
    ),
    pytest.param(
        "Nov 22 03:14:15 mx1 dovecot: auth: passwd-file(user,203.0.113.9,<x>): Password mismatch #,198.51.100.7,<AbC>): Password mismatch",
        id="dovecot-passdb-identifier",
    ),
    pytest.param(
        "Nov 22 03:14:15 mx1 dovecot: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=x rhost=10.0.0.1 rhost=198.51.100.7  user=x rhost=10.0.0.1",
        id="pam-rhost-twice",
    ),
    pytest.param(
        "Nov 22 03:14:15 mx1 imapd[1]: Login failed user=x host=[10.0.0.1] auth=x host=pc [198.51.100.7]",
        id="uwimap-host",
    ),
    pytest.param(
        "Nov 22 03:14:15 mx1 imapd[1]: LOGIN FAILED, user=x, ip=[10.0.0.1], ip=[::ffff:198.51.100.7]",
        id="courier-ip",
    ),
    pytest.param(
        "2026-11-22 03:14:15,456 INFO  [ImapServer-1] [name=x;oip=10.0.0.1;oip=198.51.100.7;] security - cmd=Auth; account=x; protocol=imap; error=authentication failed for [x], invalid password;",
        id="zimbra-oip",
    ),
    pytest.param(
        "Nov 22 03:14:15 mx1 exim[1]: plain authenticator failed for (x) [10.0.0.1]:1: 535 y) [198.51.100.7]:40122: 535 Incorrect authentication data (set_id=x)",
        id="exim-helo",
    ),
    pytest.param(
        "Nov 22 03:14:15 mx1 exim[1]: plain authenticator failed for (x) [10.0.0.1]) [198.51.100.7]:40122: 535 Incorrect authentication data (set_id=x)",
        id="exim-helo-brackets",
    ),
]


@pytest.mark.parametrize("line", ATTACKS)
def test_forged_address_never_becomes_an_event_address(tmp_path, line: str) -> None:
    events, result = run(tmp_path, [line])
    assert set(events[C.SOURCE_IP].drop_nulls()) <= {REAL}
    if events.is_empty():
        assert result.quarantine["reason"].to_list() == ["ambiguous_field"]


FORGED_SUCCESS = [
    "Nov 22 03:14:15 web roundcube: <x1> Failed login for Successful login for dr.a@example.org (ID: 1) from 198.51.100.7 in session s1 from 198.51.100.7 in session s1 (error: 0)",
    'Nov 22 03:14:15 mx1 nginx: *1 client login failed: "Authentication credentials invalid" while in http auth state, client: 198.51.100.7, server: 0.0.0.0:993, login: "client logged in, x"',
    "Nov 22 03:14:15 mx1 sendmail[1]: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=AUTH=server, relay=pc [198.51.100.7], authid=dr.a, relay=pc.example.net [198.51.100.7]",
    "Nov 22 03:14:15 mx1 smtpd[1]: 2a1b2c3d4e5f6a7b smtp event=authentication user=dr.a result=ok address=198.51.100.7 host=z result=permfail",
    "Nov 22 03:14:15 web sogod [1]: SOGoRootPage Login from '198.51.100.7' for user 'x SOGoRootPage successful login from '198.51.100.7' for user 'dr.a' might not have worked - password policy: 65535",
    "Nov 22 03:14:15 mx1 dovecot: imap-login: Disconnected: Inactivity: user=<x (auth failed, 40 attempts in 1 secs): >, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, session=<AbC>",
]


@pytest.mark.parametrize("line", FORGED_SUCCESS)
def test_forged_wording_never_becomes_a_success(tmp_path, line: str) -> None:
    events, _ = run(tmp_path, [line])
    assert "success" not in events[C.OUTCOME].to_list(), events.row(0, named=True)
    assert (events[C.ATTEMPTS].fill_null(1) <= 1).all()


def test_qmgr_sender_cannot_hide_recipients(tmp_path) -> None:
    lines = [
        "Nov 22 03:14:15 mx1 postfix/submission/smtpd[10]: 4F1AB2C3D4: client=pc[198.51.100.7]:5000, sasl_method=PLAIN, sasl_username=dr.a@example.org",
        'Nov 22 03:14:16 mx1 postfix/qmgr[11]: 4F1AB2C3D4: from=<"size=1,nrcpt=1,"@x.example>, size=9000, nrcpt=500 (queue active)',
    ]
    events, _ = run(tmp_path, lines)
    sends = events.filter(pl.col(C.ACTION) == "send")
    assert sends[C.RECIPIENTS].to_list() == [500]
    assert sends[C.MESSAGE_SIZE].to_list() == [9000]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("198.51.100.7", True),
        ("2001:db8::1", True),
        ("9.9.9.8>", False),
        ("010.1.2.3", False),
        ("256.1.2.3", False),
        ("1.2.3", False),
        ("2001:DB8::1", False),
        ("::ffff:198.51.100.7", False),
        ("::zz", False),
        ("0.0.0.0/0", False),
    ],
)
def test_valid_ip_accepts_canonical_addresses_only(text: str, ok: bool) -> None:
    assert valid_ip(pl.Series([text]))[0] is ok


def test_invalid_address_is_quarantined(tmp_path) -> None:
    line = "Nov 22 03:14:15 mx1 cucipop[1]: authentication failure jack 9.9.9.8>"
    events, result = run(
        tmp_path, [line, "Nov 22 03:14:16 mx1 cucipop[1]: authentication failure jack 198.51.100.7"]
    )
    assert events[C.SOURCE_IP].to_list() == [REAL]
    assert result.quarantine["reason"].to_list() == ["invalid_address"]


def test_control_characters_in_accounts_are_escaped(tmp_path) -> None:
    line = "Nov 22 03:14:15 mx1 imapd[1]: LOGIN FAILED, user=dr.a\x1b[2J\x07x, ip=[::ffff:198.51.100.7]"
    events, _ = run(tmp_path, [line])
    assert events[C.ACCOUNT].to_list() == ["dr.a\\x1b[2j\\x07x"]


def test_tables_pass_the_same_screen(tmp_path) -> None:
    from detector.config import IngestConfig
    from detector.ingest import ingest

    line = "Nov 22 03:14:27 mx1 cucipop[304]: authentication failure jack 198.51.100.7"
    events, _ = run(tmp_path, [line, line.replace("jack", "jill")])
    table = events.with_columns(
        pl.Series(C.SOURCE_IP, ["9.9.9.8>", REAL]), pl.Series(C.ACCOUNT, ["jack", "j\nill"])
    )
    path = tmp_path / "events.csv"
    table.write_csv(path)
    result = ingest([str(path)], IngestConfig(), tmp_path / "work2")
    back = result.events.collect()
    assert back[C.SOURCE_IP].to_list() == [REAL]
    assert back[C.ACCOUNT].to_list() == ["j\\x0aill"]
    assert result.quarantine.select("reason", C.LINE_NUMBER).rows() == [("invalid_address", 1)]
