"""End to end: a night where attackers write into the logs (issue 12, "Done when").

A small simulated night (``tests.run_fixtures``) plus forged lines for the parser families, sent
from one real attacking address: user names carrying another ``rip=``, ``rhost=``, ``host=[..]``,
``ip=[..]``, ``;oip=``, ``from``, success wording for practitioners' accounts, Dovecot passwd-file
fields and spreadsheet formulas, and address-like values that are not addresses. Whatever the
parsers make of each line, the published night holds no invalid address, no block past the plan's
guards, no block of the framed addresses (the whole Internet, a private range, a busy legitimate
address), no reset or lock of the framed practitioners, no injected Dovecot entry and no live
formula in the CSV plan.
"""

from __future__ import annotations

import csv
import ipaddress
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.config import PlanConfig
from detector.recommend.guard import Guard
from tests.run_fixtures import DAY, night_lines, write_practitioners

ATTACKER = "203.0.113.77"
BUSY = "198.51.100.10"  # user0's home address: three calm logins a day
FRAMED_NETS = ["0.0.0.0/0", "10.0.0.0/8", "10.0.0.1", BUSY, "192.168.1.1"]
PRACTITIONERS = ["user0@example.org", "user4@example.org", "user8@example.org"]
PASSWD = "user12@example.org:::::::allow_nets=203.0.113.0/24 x"
FORMULAS = ['=HYPERLINK("http://x.example")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3"]


def _frames(k: int) -> list[tuple[str, str]]:
    """(program, message) of forged failures: the attacker's address is ATTACKER, the names frame others."""
    u = f"user{k % 8}@example.org"
    return [
        ("dovecot", f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{u} rip=0.0.0.0/0,>, method=PLAIN, rip={ATTACKER}, lip=192.0.2.1, TLS, session=<h{k}a>"),
        ("dovecot", f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{u} rip=10.0.0.1,>, method=PLAIN, rip={ATTACKER}, lip=192.0.2.1, TLS, session=<h{k}b>"),
        ("dovecot", f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{u}, rip={BUSY}>, method=PLAIN, rip={ATTACKER}, lip=192.0.2.1, TLS, session=<h{k}c>"),
        ("dovecot", f"auth: passwd-file({u},{BUSY},<x>): Password mismatch #,{ATTACKER},<h{k}d>): Password mismatch"),
        ("dovecot", f"pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser={u} rhost={BUSY} rhost={ATTACKER}  user={u}"),
        ("imapd", f"Login failed user={u} host=[{BUSY}] auth={u} host=pc.example.net [{ATTACKER}]"),
        ("imapd-ssl", f"LOGIN FAILED, user={u}, ip=[{BUSY}], ip=[::ffff:{ATTACKER}]"),
        ("postfix/smtpd", f"warning: unknown[{ATTACKER}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={u} [10.0.0.1]"),
        ("exim", f"dovecot_plain authenticator failed for (x) [{BUSY}]:1 H=(y) [{ATTACKER}]:40122: 535 Incorrect authentication data (set_id={u})"),
        ("dovecot", f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{u}>, method=PLAIN, rip=9.9.9.8>, lip=192.0.2.1, TLS, session=<h{k}e>"),
        ("imapd-ssl", f"LOGIN FAILED, user={u}, ip=[::ffff:300.1.2.3]"),
    ]  # fmt: skip


def _forged_successes(k: int) -> list[tuple[str, str]]:
    """Failed logins whose names carry the daemons' success wording, against practitioners."""
    p = PRACTITIONERS[k % len(PRACTITIONERS)]
    return [
        ("roundcube", f"<x{k}> Failed login for {p} Successful login for {p} (ID: 1) from {ATTACKER} in session x{k} from {ATTACKER} in session y{k} (error: 0)"),
        ("sogod", f"SOGoRootPage Login from '{ATTACKER}' for user '{p}' successful login from '{ATTACKER}' for user '{p}' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0"),
        ("nginx", f'*1{k} client login failed: "Authentication credentials invalid" while in http auth state, client: {ATTACKER}, server: 0.0.0.0:993, login: "{p}\\" client login ok"'),
        ("smtpd", f"2a1b2c3d4e5f{k:04x} smtp event=authentication user={p} result=ok address={ATTACKER} host=z.example.net result=permfail"),
        ("dovecot", f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{p} Login: user=<{p}>>, method=PLAIN, rip={ATTACKER}, lip=192.0.2.1, TLS, session=<s{k}f>"),
    ]  # fmt: skip


def _injections(k: int) -> list[tuple[str, str]]:
    """Names that would add a Dovecot passwd-file entry or a spreadsheet formula if written raw."""
    names = [PASSWD, *(f"{f}@example.org" for f in FORMULAS)]
    return [
        ("dovecot", f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{n}>, method=PLAIN, rip={ATTACKER}, lip=192.0.2.1, TLS, session=<i{k}{j}>")
        for j, n in enumerate(names)
    ]  # fmt: skip


def _line(t, program: str, message: str) -> str:
    return f"{t.strftime('%Y-%m-%dT%H:%M:%S+00:00')} mail {program}: {message}"


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    forged = []
    for k in range(40):
        t = DAY + timedelta(hours=2, seconds=20 * k)
        forged += [_line(t, p, m) for p, m in (*_frames(k), *_forged_successes(k), *_injections(k))]
    lines = sorted(night_lines() + forged, key=lambda line: line[:25])
    (root / "logs").mkdir()
    (root / "logs" / "mail.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_practitioners(root / "practitioners.csv")
    res = CliRunner().invoke(
        app,
        [
            "run",
            str(root / "logs"),
            "--out",
            str(root / "out"),
            "--practitioners",
            str(root / "practitioners.csv"),
        ],
    )
    assert res.exit_code in (0, 3), res.output
    return root


def _plan(night: Path) -> pl.DataFrame:
    return pl.read_parquet(night / "out" / "recommendations.parquet")


pytestmark = pytest.mark.slow


def test_every_address_in_the_events_is_valid_and_canonical(night: Path) -> None:
    ips = pl.read_parquet(night / "out" / "events.parquet").get_column("source_ip").drop_nulls().unique()
    for ip in ips:
        assert str(ipaddress.ip_address(ip)) == ip, ip
    assert not set(ips) & {"0.0.0.0", "10.0.0.1", "9.9.9.8", "9.9.9.8>", "300.1.2.3", "192.168.1.1"}
    quarantined = pl.read_parquet(night / "out" / "quarantine.parquet")
    assert quarantined.height >= 80, "the invalid addresses are quarantined, not dropped"


def test_the_framed_busy_address_keeps_only_its_owners_logins(night: Path) -> None:
    events = pl.read_parquet(night / "out" / "events.parquet").filter(pl.col("source_ip") == BUSY)
    assert set(events.get_column("account").to_list()) == {"user0@example.org"}
    assert set(events.get_column("outcome").to_list()) == {"success"}


def test_no_block_past_the_guards_nor_on_a_framed_network(night: Path) -> None:
    plan = _plan(night)
    assert Guard.from_config(PlanConfig()).blocks(plan).is_empty()
    blocked = plan.filter(pl.col("action") == "block").get_column("target").to_list()
    assert ATTACKER in blocked or any(
        ipaddress.ip_address(ATTACKER) in ipaddress.ip_network(b) for b in blocked if not b.startswith("AS")
    ), blocked
    for target in blocked:
        if target.startswith("AS"):
            continue
        net = ipaddress.ip_network(target)
        for framed in FRAMED_NETS:
            assert not net.overlaps(ipaddress.ip_network(framed)) or (
                framed == "0.0.0.0/0" and net.prefixlen >= 16
            )


def test_no_reset_nor_lock_of_a_framed_practitioner(night: Path) -> None:
    plan = _plan(night).filter(pl.col("target").is_in(PRACTITIONERS))
    assert plan.filter(pl.col("action").is_in(["reset_credentials", "lock_account"])).is_empty(), plan
    accounts = pl.read_parquet(night / "out" / "accounts.parquet").filter(
        pl.col("account").is_in(PRACTITIONERS)
    )
    assert "compromised" not in accounts.get_column("verdict").to_list()


def _export(night: Path, fmt: str, out: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["export", "--plan", str(night / "out" / "recommendations.parquet"), "--format", fmt, "--out", str(out),
         "--now", (DAY + timedelta(hours=23)).isoformat()],
    )  # fmt: skip
    assert res.exit_code == 0, res.output


def test_no_injected_dovecot_entry(night: Path, tmp_path: Path) -> None:
    _export(night, "dovecot", tmp_path / "dovecot")
    entries = [
        line
        for f in (tmp_path / "dovecot").iterdir()
        if f.name != "detector.conf"
        for line in f.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert entries, "the attacker's measures are exported"
    assert not [
        e for e in entries if "allow_nets=203.0.113.0/24 x" in e or e.startswith(PASSWD.split(":")[0] + ":::")
    ]


def test_no_formula_cell_in_the_csv_plan(night: Path, tmp_path: Path) -> None:
    _export(night, "csv", tmp_path / "plan.csv")
    with (tmp_path / "plan.csv").open(newline="", encoding="utf-8") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert cells
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
