"""A straightforward per-line Python ``re`` parser of the same Dovecot/Postfix lines (the baseline).

What one would write first: a loop over lines, one regex for the syslog envelope, one per line
kind, a dict per event, written to Parquet in batches. No correlation beyond what a line holds.

    .venv/bin/python bench/reference_parser.py mail.log out.parquet
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

ENVELOPE = re.compile(r"^(\w{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: (.*)$")
MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1
    )
}
DV_LOGIN = re.compile(
    r"^(\w+)-login: (?:Info: )?Login: user=<([^>]*)>, method=(\w+), rip=([^,]+), lip=([^,]+)"
)
DV_FAIL = re.compile(
    r"^(\w+)-login: .*\(auth failed, (\d+) attempts.*?\): user=<([^>]*)>, (?:method=(\w+), )?rip=([^,]+), lip=([^,]+)"
)
DV_AUTH = re.compile(
    r"^auth(?:-worker\(\d+\))?: (?:Info: )?.*?(\w[\w-]*)\(([^,()]*),([^,()]*)(?:,<[^>]*>)?\): (.*)$"
)
DV_LOGOUT = re.compile(
    r"^(imap|pop3)\(([^)]*)\)<\d+><([^>]*)>: Disconnected: .*?(?:in=(\d+) out=(\d+)|size=(\d+))"
)
PF_CLIENT = re.compile(r"^(\w+): client=[^\[]*\[([^\]]+)\](?::\d+)?, sasl_method=(\w+), sasl_username=(\S+)")
PF_FAIL = re.compile(r"^warning: [^\[]*\[([^\]]+)\](?::\d+)?: SASL (\S+) authentication failed: (.*)$")
PF_QMGR = re.compile(r"^(\w+): from=<([^>]*)>, size=(\d+), nrcpt=(\d+)")

COLUMNS = [
    "timestamp",
    "host",
    "daemon",
    "service",
    "action",
    "outcome",
    "account",
    "source_ip",
    "reason",
    "line_number",
]


def parse_line(line: str, year: int) -> dict | None:
    m = ENVELOPE.match(line)
    if not m:
        return None
    mon, day, hh, mm, ss, host, prog, _pid, msg = m.groups()
    ts = datetime(year, MONTHS.get(mon, 1), int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    ev = {"timestamp": ts, "host": host}
    if prog == "dovecot":
        if d := DV_LOGIN.match(msg):
            return ev | dict(
                daemon="dovecot",
                service=d[1],
                action="login",
                outcome="success",
                account=d[2].lower(),
                source_ip=d[4],
            )
        if d := DV_FAIL.match(msg):
            return ev | dict(
                daemon="dovecot",
                service=d[1],
                action="login",
                outcome="failure",
                account=d[3].lower(),
                source_ip=d[5],
            )
        if d := DV_AUTH.match(msg):
            outcome = "unknown_user" if "unknown user" in d[4] else "failure"
            return ev | dict(
                daemon="dovecot",
                action="login",
                outcome=outcome,
                account=d[2].lower(),
                source_ip=d[3],
                reason=d[4],
            )
        if d := DV_LOGOUT.match(msg):
            return ev | dict(daemon="dovecot", service=d[1], action="logout", account=d[2].lower())
        return None
    if prog.startswith("postfix"):
        if d := PF_CLIENT.match(msg):
            return ev | dict(
                daemon="postfix", action="login", outcome="success", account=d[4].lower(), source_ip=d[2]
            )
        if d := PF_FAIL.match(msg):
            return ev | dict(daemon="postfix", action="login", outcome="failure", source_ip=d[1], reason=d[3])
        if d := PF_QMGR.match(msg):
            return ev | dict(daemon="postfix", action="send", account=d[2].lower())
    return None


def main(src: str, out: str, year: int = 2026) -> int:
    schema = pa.schema(
        [("timestamp", pa.timestamp("us", "UTC"))]
        + [(c, pa.string()) for c in COLUMNS[1:-1]]
        + [("line_number", pa.int64())]
    )
    writer = pq.ParquetWriter(out, schema)
    batch: list[dict] = []
    n = 0
    with open(src, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            ev = parse_line(line.rstrip("\n"), year)
            if ev is not None:
                ev["line_number"] = n
                batch.append(ev)
                if len(batch) >= 100_000:
                    writer.write_table(pa.Table.from_pylist(batch, schema))
                    batch.clear()
    if batch:
        writer.write_table(pa.Table.from_pylist(batch, schema))
    writer.close()
    return n


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
