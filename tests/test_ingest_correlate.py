"""The Dovecot two-line failure counts once; merges survive batch boundaries."""

from __future__ import annotations

from detector.schema import Outcome, Service
from tests.ingest_helpers import run

S = "Nov 22 10:00:0"


def auth(sec: int, user: str, ip: str, session: str | None, reason: str = "Password mismatch") -> str:
    sess = f",<{session}>" if session else ""
    return f"{S}{sec} mx1 dovecot: auth-worker(31): passwd-file({user},{ip}{sess}): {reason} (given password: {{SSHA}}q1w2e3r4t5)"


def login(sec: int, user: str, ip: str, session: str, n: int = 1) -> str:
    return (
        f"{S}{sec} mx1 dovecot: imap-login: Disconnected: Aborted login by logging out (auth failed, {n} attempts in 3 secs): "
        f"user=<{user}>, method=PLAIN, rip={ip}, lip=192.0.2.1, TLS, session=<{session}>"
    )


def test_two_lines_by_session_count_once(tmp_path):
    ev, result = run(
        tmp_path,
        [auth(1, "amy@x.org", "198.51.100.1", "Se55"), login(3, "amy@x.org", "198.51.100.1", "Se55")],
    )
    assert len(ev) == 1
    row = ev.row(0, named=True)
    assert row["outcome"] == Outcome.FAILURE
    assert (row["account"], row["reason"], row["password_hash"]) == (
        "amy@x.org",
        "Password mismatch",
        "{SSHA}q1w2e3r4t5",
    )
    assert (row["service"], row["tls"], row["auth_method"], row["local_ip"], row["attempts"]) == (
        Service.IMAP,
        True,
        "PLAIN",
        "192.0.2.1",
        1,
    )
    assert row["line_number"] == 1
    assert result.noise == {"noise:merged": 1}


def test_without_session_joined_on_address_and_account(tmp_path):
    ev, _ = run(
        tmp_path, [auth(1, "bob@x.org", "198.51.100.2", None), login(4, "bob@x.org", "198.51.100.2", "Zz1")]
    )
    assert len(ev) == 1
    assert ev["service"][0] == Service.IMAP


def test_attempts_add_up_to_the_login_line(tmp_path):
    lines = [
        auth(1, "cy@x.org", "198.51.100.3", "M1"),
        auth(2, "cy@x.org", "198.51.100.3", "M1"),
        login(4, "cy@x.org", "198.51.100.3", "M1", n=3),
    ]
    ev, _ = run(tmp_path, lines)
    assert len(ev) == 2
    assert ev["attempts"].sum() == 3


def test_different_sessions_are_not_merged(tmp_path):
    ev, _ = run(
        tmp_path, [auth(1, "di@x.org", "198.51.100.4", "A1"), login(2, "di@x.org", "198.51.100.4", "B2")]
    )
    assert len(ev) == 2


def test_merge_across_batch_boundaries(tmp_path):
    lines = []
    for i in range(300):
        sec = f"{i % 60:02d}"
        minute = f"{10 + i // 60:02d}"
        lines.append(
            f"Nov 22 10:{minute}:{sec} mx1 dovecot: auth-worker(31): passwd-file(u{i}@x.org,198.51.100.9,<k{i}>): Password mismatch"
        )
        lines.append(
            f"Nov 22 10:{minute}:{sec} mx1 dovecot: imap-login: Disconnected (auth failed, 1 attempts in 1 secs): "
            f"user=<u{i}@x.org>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, TLS, session=<k{i}>"
        )
    ev, result = run(tmp_path, lines, chunk_bytes=4096)
    assert len(ev) == 300
    assert result.noise == {"noise:merged": 300}
    assert ev["timestamp"].is_sorted()


def test_logout_takes_the_address_of_its_login_across_batches(tmp_path):
    login_line = (
        "Nov 22 09:00:00 mx1 dovecot: imap-login: Login: user=<eva@x.org>, method=PLAIN, rip=203.0.113.77, "
        "lip=192.0.2.1, mpid=4711, TLS, session=<Lg1>"
    )
    filler = [
        f"Nov 22 {10 + i // 60:02d}:{i % 60:02d}:00 mx1 dovecot: master: tick {i} " + "x" * 60
        for i in range(400)
    ]
    logout = "Nov 22 17:00:00 mx1 dovecot: imap(eva@x.org)<4711><Lg1>: Disconnected: Logged out in=10 out=20"
    ev, _ = run(tmp_path, [login_line, *filler, logout], chunk_bytes=4096)
    out = ev.filter(action="logout").row(0, named=True)
    assert (out["source_ip"], out["local_ip"], out["tls"]) == ("203.0.113.77", "192.0.2.1", True)
