"""A small night of Dovecot logs written by hand-made rules, for fast end-to-end runs of `detector run`.

Benign users log in from their home addresses; a credential-stuffing campaign tries many accounts
(some unknown) from many addresses of two /24s; a brute force against one account ends in a
success (a compromised account); two lines have no syslog envelope (quarantined).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

DAY = datetime(2025, 3, 1, tzinfo=UTC)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _login(t: datetime, user: str, ip: str, n: int) -> str:
    return (
        f"{_stamp(t)} mail dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, "
        f"lip=192.0.2.1, mpid={1000 + n}, TLS, session=<s{n}>"
    )


def _failed(t: datetime, user: str, ip: str, n: int) -> str:
    return (
        f"{_stamp(t)} mail dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): "
        f"user=<{user}>, method=PLAIN, rip={ip}, lip=192.0.2.1, TLS, session=<f{n}>"
    )


def night_lines(day: datetime = DAY, *, users: int = 40, attackers: int = 24) -> list[str]:
    """The lines of one night, in time order."""
    events: list[tuple[datetime, str]] = []
    n = 0
    for u in range(users):
        for k in range(3):
            n += 1
            t = day + timedelta(hours=7 + k * 4, minutes=u)
            events.append((t, _login(t, f"user{u}@example.org", f"198.51.100.{10 + u}", n)))
    for a in range(attackers):
        ip = f"203.0.113.{a}" if a % 2 else f"192.0.2.{100 + a}"
        for k in range(6):
            n += 1
            t = day + timedelta(hours=1, minutes=a, seconds=7 * k)
            target = f"user{(a * 6 + k) % users}@example.org" if k % 3 else f"nobody{a}{k}@example.org"
            events.append((t, _failed(t, target, ip, n)))
    for k in range(30):
        n += 1
        t = day + timedelta(hours=3, seconds=20 * k)
        events.append((t, _failed(t, "victim@example.org", "185.220.101.7", n)))
    n += 1
    t = day + timedelta(hours=3, minutes=11)
    events.append((t, _login(t, "victim@example.org", "185.220.101.7", n)))
    for k in range(2):
        t = day + timedelta(hours=12, minutes=k)
        events.append((t, _login(t, "victim@example.org", "198.51.100.200", n + 1 + k)))
    events.sort(key=lambda e: e[0])
    lines = [line for _, line in events]
    lines.insert(5, "this line has no syslog envelope")
    lines.insert(50, "\x00\x01 garbage")
    return lines


def write_night(dir: Path, day: datetime = DAY, name: str = "mail.log", **kw) -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    path = dir / name
    path.write_text("\n".join(night_lines(day, **kw)) + "\n", encoding="utf-8")
    return path


def write_practitioners(path: Path) -> Path:
    rows = ["account,profession"] + [f"user{u}@example.org,physician" for u in range(0, 40, 4)]
    rows.append("victim@example.org,nurse")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path
