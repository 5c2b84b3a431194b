"""`detector ingest` end to end: outputs, summary, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
from typer.testing import CliRunner

from detector.cli import app
from tests.ingest_helpers import write_log

LINES = [
    "Nov 22 10:00:01 mx1 dovecot: auth-worker(3): passwd-file(ann@x.org,192.0.2.50,<k1>): Password mismatch",
    "Nov 22 10:00:02 mx1 dovecot: imap-login: Disconnected (auth failed, 1 attempts in 1 secs): user=<ann@x.org>, method=PLAIN, rip=192.0.2.50, lip=192.0.2.1, TLS, session=<k1>",
    "Nov 22 10:00:03 mx1 postfix/smtpd[9]: connect from unknown[192.0.2.60]",
    "not a log line",
]


def test_ingest_writes_events_and_quarantine(tmp_path):
    log = write_log(tmp_path / "mail.log", LINES)
    out = tmp_path / "out" / "events.parquet"
    res = CliRunner().invoke(app, ["ingest", str(log), "--out", str(out), "--timezone", "UTC"])
    assert res.exit_code == 0, res.output
    assert "lines read" in res.output and "quarantined" in res.output
    ev = pl.read_parquet(out)
    assert ev.height == 1 and ev["account"][0] == "ann@x.org"
    q = pl.read_parquet(tmp_path / "out" / "events.quarantine.parquet")
    assert q["line_number"].to_list() == [4]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary left behind


def test_missing_path_exit_2_one_line(tmp_path):
    res = CliRunner().invoke(
        app, ["ingest", str(tmp_path / "missing.log"), "--out", str(tmp_path / "e.parquet")]
    )
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("detector: error:") and "missing.log" in lines[0]
    assert "Traceback" not in res.output


def test_unrecognisable_input_exit_2(tmp_path):
    log = write_log(tmp_path / "x.log", ["hello", "world"])
    res = CliRunner().invoke(app, ["ingest", str(log), "--out", str(tmp_path / "e.parquet")])
    assert res.exit_code == 2
    assert res.output.strip().startswith("detector: error:") and "no recognisable" in res.output
    assert not (tmp_path / "e.parquet").exists()


def test_stdin_and_year_through_the_real_command(tmp_path):
    out = tmp_path / "e.parquet"
    p = subprocess.run(
        [sys.executable, "-m", "detector", "ingest", "-", "--out", str(out), "--year", "2021"],
        input="\n".join(LINES) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    ev = pl.read_parquet(out)
    assert ev["timestamp"][0].year == 2021 and ev["source_file"][0] == "-"


def test_unknown_timezone_exit_2(tmp_path):
    log = write_log(tmp_path / "mail.log", LINES)
    res = CliRunner().invoke(
        app, ["ingest", str(log), "--out", str(tmp_path / "e.parquet"), "--timezone", "Europe/Pariss"]
    )
    assert res.exit_code == 2
    assert "unknown time zone" in res.output and "Europe/Paris" in res.output
