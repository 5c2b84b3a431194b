"""How many authentication lines of public parser test suites become events with the right address.

Reads a folder kept OUTSIDE the repository (nothing of it is committed: fail2ban's test logs are
GPL) holding fail2ban-style annotated logs: one file per filter (``dovecot``, ``postfix``,
``roundcube-auth``, ...), each log line preceded by ``# failJSON: {"match": true, "host": ...}``.
Every annotated line that upstream matches, that names an address and that is an authentication
line (it mentions auth, login, password, SASL or credentials: a Postfix ``Relay access denied``
is not) must become an event of ``detector.ingest`` with that ``source_ip`` (and that
``account`` where upstream names a ``user``). Lines without a time stamp get a synthetic syslog
envelope with the filter's program; events are matched back by line number (a neighbour within
two lines also counts: some daemons log one attempt over several lines, which ingestion merges).

    python bench/wild_conformance.py /work/wild/fail2ban [--misses 5] [--json]
    python bench/wild_conformance.py /work/wild/patterndb

A folder may also hold syslog-ng patterndb rule files (``*.xml``, ``*.pdb``): each
``<example>``'s ``<test_message program="...">`` is a line, and the address and user name its
``<test_values>`` give (``*.client.ip``, ``*.login.ip``, ``usracct.device``; ``*username``) are
the annotation.

The upstream repositories and commits are listed in docs/parsers.md ("Conformance in the wild").
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import polars as pl

AUTH_LINE = re.compile(r"(?i)auth|login|logon|passw|sasl|credential")
PRE_AUTH = re.compile(
    r"no auth attempts|before auth was ready|SSL_accept\(\) failed|client didn't finish SASL|Too many invalid commands"
)
"""Disconnects before any credential was checked (fail2ban's aggressive mode bans them): not an
authentication attempt, so reported apart and not counted."""
ANNOTATION = "# failJSON:"
HAS_STAMP = re.compile(
    r"^(?:[A-Z][a-z]{2}[ -]+\d{1,2}[ -]|\d{4}[-/.]\d{2}[-/.]\d{2}|\d{2}/\d{2}/\d{4}|@4000|<\d+>|\[|\d{10}|"
    r"[A-Z][a-z]{2}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}|[A-Z][a-z]{2} [A-Z][a-z]{2} )"
)
PROGRAM = {
    "dovecot": "dovecot",
    "postfix": "postfix/smtpd[42]",
    "exim": "exim[42]",
    "courier-auth": "imapd",
    "courier-smtp": "courieresmtpd",
    "cyrus-imap": "imaps[42]",
    "sendmail-auth": "sm-mta[42]",
    "uwimap-auth": "imapd[42]",
    "roundcube-auth": "roundcube",
    "sogo-auth": "sogod[42]",
    "squirrelmail": "squirrelmail",
    "oracleims": "oracleims",
    "tine20": "tine20",
    "groupoffice": "groupoffice",
}


def norm_ip(text: object) -> str | None:
    if not text:
        return None
    s = str(text).strip().strip("[]").split("%")[0]
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return s.lower()
    return str(ip.ipv4_mapped) if ip.version == 6 and ip.ipv4_mapped else str(ip)


def annotated(path: Path) -> list[tuple[str, dict | None]]:
    """(line, annotation or None) for every log line of a fail2ban test file."""
    out, pending = [], None
    for raw in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        if raw.startswith(ANNOTATION):
            try:
                pending = json.loads(raw[len(ANNOTATION) :])
            except json.JSONDecodeError:
                pending = None
            continue
        if not raw.strip() or raw.startswith("#"):
            continue
        out.append((raw, pending))
        pending = None
    return out


PDB_ADDRESS = (".client.ip", ".login.ip", "usracct.device", ".src_ip")
PDB_USER = "username"


def patterndb(path: Path) -> list[tuple[str, dict | None]]:
    """(line, annotation in fail2ban's shape or None) for every example of a patterndb file."""
    out = []
    for i, example in enumerate(ET.parse(path).getroot().iter("example"), start=1):
        message = example.find("test_message")
        if message is None or not message.text:
            continue
        values = {v.get("name", ""): v.text or "" for v in example.iter("test_value")}
        host = next((v for k, v in values.items() if k.endswith(PDB_ADDRESS)), None)
        user = next((v for k, v in values.items() if k.endswith(PDB_USER)), None)
        line = f"Nov 23 03:14:{i % 60:02d} mail {message.get('program', path.stem)}[42]: {message.text}"
        out.append((line, {"match": True, "host": host, "user": user} if host else None))
    return out


def score(folder: Path, misses: int) -> dict[str, list[int]]:
    from detector.config import IngestConfig
    from detector.ingest import ingest

    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    lost: dict[str, list[str]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            pdb = path.suffix in (".xml", ".pdb")
            daemon = f"{path.stem} (patterndb)" if pdb else path.name
            lines = patterndb(path) if pdb else annotated(path)
            log = Path(tmp) / f"{daemon}.log"
            expected = []
            with open(log, "w", encoding="utf-8", errors="surrogateescape") as f:
                for i, (line, note) in enumerate(lines, start=1):
                    if not HAS_STAMP.match(line):
                        line = f"Nov 23 03:14:{i % 60:02d} mail {PROGRAM.get(daemon, daemon)}: {line}"
                    f.write(line + "\n")
                    note = note or {}
                    if note.get("match") is True and note.get("host") and AUTH_LINE.search(line):
                        if PRE_AUTH.search(line):
                            totals["(pre-auth disconnects, not counted)"][0] += 1
                            continue
                        expected.append((i, line, norm_ip(note["host"]), note.get("user")))
            by_line: dict[int, list[tuple[str | None, str]]] = defaultdict(list)
            try:
                result = ingest([str(log)], IngestConfig(), Path(tmp) / f"work-{daemon}")
                events = result.events.collect()
            except Exception as e:  # a file no parser reads scores 0, the run goes on
                print(f"{daemon}: {type(e).__name__}: {e}", file=sys.stderr)
                events = pl.DataFrame()
            for row in events.iter_rows(named=True):
                by_line[row["line_number"]].append(
                    (norm_ip(row["source_ip"]), (row["account"] or "").lower())
                )
            for i, line, host, user in expected:
                t = totals[daemon]
                t[0] += 1
                hit = [x for j in range(i - 2, i + 3) for x in by_line.get(j, []) if x[0] == host]
                if hit:
                    t[1] += 1
                elif len(lost[daemon]) < misses:
                    lost[daemon].append(f"  {i}: want {host}: {line[:150]}")
                if user:
                    t[2] += 1
                    t[3] += any(x[1] == str(user).lower() for x in hit)
    for daemon in sorted(lost):
        print(f"misses {daemon}:")
        print("\n".join(lost[daemon]))
    return dict(totals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--misses", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    totals = score(a.folder, a.misses)
    print(f"{'daemon':<16} found/expected  user found/expected")
    overall = [0, 0, 0, 0]
    for daemon in sorted(totals):
        t = totals[daemon]
        if daemon.startswith("("):
            print(f"{daemon}: {t[0]}")
            continue
        overall = [x + y for x, y in zip(overall, t, strict=True)]
        print(f"{daemon:<16} {t[1]:>5}/{t[0]:<8} {t[3]:>5}/{t[2]}")
    dp = [sum(totals.get(d, [0, 0])[k] for d in ("dovecot", "postfix")) for k in (0, 1)]
    print(f"dovecot+postfix: {dp[1]}/{dp[0]} ({dp[1] / max(1, dp[0]):.1%})")
    print(f"all mail daemons: {overall[1]}/{overall[0]} ({overall[1] / max(1, overall[0]):.1%})")
    if a.json:
        print(json.dumps(totals))


if __name__ == "__main__":
    main()
