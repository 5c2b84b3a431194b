"""Envelopes: RFC 3164 with year inference, RFC 5424, ISO 8601 offsets, Dovecot log_path, time zones."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from detector.ingest.envelope import parse_envelope
from tests.ingest_helpers import run

REF = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def env(lines: list[str], **kw) -> pl.DataFrame:
    frame = pl.DataFrame({"raw": lines, "source_file": "f", "line_number": list(range(1, len(lines) + 1))})
    kw.setdefault("reference", REF)
    return parse_envelope(frame.lazy(), **kw).collect().sort("line_number")


CASES = [
    pytest.param(
        "Nov 23 03:14:15 mx1 dovecot: imap-login: Login: x",
        datetime(2026, 11, 23, 3, 14, 15),
        "mx1",
        "dovecot",
        None,
        "imap-login: Login: x",
        id="rfc3164",
    ),
    pytest.param(
        "Nov  3 03:14:15 mx1 postfix/smtpd[42]: connect from x",
        datetime(2026, 11, 3, 3, 14, 15),
        "mx1",
        "postfix/smtpd",
        42,
        "connect from x",
        id="rfc3164-padded-day",
    ),
    pytest.param(
        "Sep 8 07:46:30 mx1 dovecot[9]: auth: x",
        datetime(2026, 9, 8, 7, 46, 30),
        "mx1",
        "dovecot",
        9,
        "auth: x",
        id="rfc3164-unpadded-day",
    ),
    pytest.param(
        "<38>Nov 23 03:14:15 mx1 sshd[1]: y",
        datetime(2026, 11, 23, 3, 14, 15),
        "mx1",
        "sshd",
        1,
        "y",
        id="rfc3164-pri",
    ),
    pytest.param(
        "2026-11-23T03:14:15.123456+01:00 mx1 dovecot: imap-login: z",
        datetime(2026, 11, 23, 2, 14, 15, 123456),
        "mx1",
        "dovecot",
        None,
        "imap-login: z",
        id="rsyslog-high-precision",
    ),
    pytest.param(
        "2026-11-23T03:14:15+0100 mx1 postfix/qmgr[7]: q",
        datetime(2026, 11, 23, 2, 14, 15),
        "mx1",
        "postfix/qmgr",
        7,
        "q",
        id="journald-short-iso",
    ),
    pytest.param(
        "2026-11-23T03:14:15.5Z mx1 prog: m",
        datetime(2026, 11, 23, 3, 14, 15, 500000),
        "mx1",
        "prog",
        None,
        "m",
        id="iso-zulu",
    ),
    pytest.param(
        "<34>1 2026-11-23T03:14:15.003Z mx1 dovecot 77 - - auth: a",
        datetime(2026, 11, 23, 3, 14, 15, 3000),
        "mx1",
        "dovecot",
        77,
        "auth: a",
        id="rfc5424",
    ),
    pytest.param(
        '<34>1 2026-11-23T03:14:15Z mx1 app - ID1 [ex@1 k="v"] msg',
        datetime(2026, 11, 23, 3, 14, 15),
        "mx1",
        "app",
        None,
        "msg",
        id="rfc5424-sd",
    ),
    pytest.param(
        "2026-11-23 03:14:15 imap-login: Info: Login: u",
        datetime(2026, 11, 23, 3, 14, 15),
        None,
        "imap-login",
        None,
        "Login: u",
        id="dovecot-log_path",
    ),
    pytest.param(
        "2026-11-23 03:14:15 auth-worker(5): Warning: w",
        datetime(2026, 11, 23, 3, 14, 15),
        None,
        "auth-worker(5)",
        None,
        "w",
        id="log_path-level-stripped",
    ),
    pytest.param(
        "2026-11-23 03:14:15 login authenticator failed for h [192.0.2.1]: 535",
        datetime(2026, 11, 23, 3, 14, 15),
        None,
        None,
        None,
        "login authenticator failed for h [192.0.2.1]: 535",
        id="tagless-stamp",
    ),
]


@pytest.mark.parametrize(("raw", "ts", "host", "program", "pid", "message"), CASES)
def test_envelope(raw, ts, host, program, pid, message):
    row = env([raw]).row(0, named=True)
    assert row["envelope_ok"]
    assert row["timestamp"] == ts.replace(tzinfo=UTC)
    assert (row["host"], row["program"], row["pid"], row["message"]) == (host, program, pid, message)


@pytest.mark.parametrize(
    "raw", ["", "hello world", "\x00\x01\x02binary", "Nov 99 99:99:99 x y: z", "2026-13-45T99:00:00Z h p: m"]
)
def test_no_envelope(raw):
    assert not env([raw])["envelope_ok"][0]


def test_year_is_the_latest_not_in_the_future_of_the_file():
    out = env(["Nov 23 11:00:00 h p: a", "Dec 31 23:59:59 h p: b", "Jan  1 00:00:01 h p: c"])
    assert [t.year for t in out["timestamp"]] == [2026, 2025, 2026]


def test_file_crossing_new_year_stays_in_order(tmp_path):
    lines = [
        "Dec 31 23:59:58 mx1 dovecot: imap-login: Login: user=<a@x>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=1, session=<a>",
        "Jan  1 00:00:02 mx1 dovecot: imap-login: Login: user=<b@x>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=2, session=<b>",
    ]
    from tests.ingest_helpers import write_log

    write_log(tmp_path / "m.log", lines, mtime=datetime(2027, 1, 1, 6, 0, tzinfo=UTC))
    from detector.config import IngestConfig
    from detector.ingest import ingest

    ev = ingest([str(tmp_path / "m.log")], IngestConfig(), tmp_path / "w").events.collect()
    assert [t.year for t in ev["timestamp"]] == [2026, 2027]
    assert ev["line_number"].to_list() == [1, 2]


def test_year_override_moves_on_at_new_year():
    state: dict = {}
    out = env(["Dec 31 23:59:58 h p: a", "Jan  1 00:00:02 h p: b"], year=2020, year_state=state)
    assert [t.year for t in out["timestamp"]] == [2020, 2021]
    nxt = env(["Jan  2 00:00:00 h p: c"], year=2020, year_state=state)
    assert nxt["timestamp"][0].year == 2021


def test_timezone_applies_to_offsetless_stamps_only():
    out = env(
        ["Nov 23 03:00:00 h p: a", "2026-11-23 03:00:00 imap-login: b", "2026-11-23T03:00:00+00:00 h p: c"],
        timezone="Europe/Paris",
    )
    assert [t.hour for t in out["timestamp"]] == [2, 2, 3]


def test_year_option_through_ingest(tmp_path):
    ev, _ = run(
        tmp_path,
        ["Mar  1 10:00:00 mx1 dovecot: auth: passwd-file(a@x,192.0.2.9): Password mismatch"],
        year=2019,
    )
    assert ev["timestamp"][0] == datetime(2019, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "host", "program", "pid", "message"),
    [
        (
            "Nov 23 03:14:15 mx-é dovecot: imap-login: Login: x",
            "mx-é",
            "dovecot",
            None,
            "imap-login: Login: x",
        ),
        ("Nov 23 03:14:15 mx1 prögram[7]: mëssage: ü", "mx1", "prögram", 7, "mëssage: ü"),
        (
            "2026-11-23 03:14:15 imap(ü@x)<1><s>: Info: Disconnected",
            None,
            "imap(ü@x)<1><s>",
            None,
            "Disconnected",
        ),
        ("2026-11-23T03:14:15Z hôte p: m", "hôte", "p", None, "m"),
    ],
    ids=["host", "tag-and-message", "log_path-user", "iso-host"],
)
def test_non_ascii_text_is_cut_at_the_right_place(raw, host, program, pid, message):
    # offsets and cuts both count bytes, whatever unit polars's str.find counts in
    row = env([raw]).row(0, named=True)
    assert (row["host"], row["program"], row["pid"], row["message"]) == (host, program, pid, message)


def test_runs_of_equal_stamps_each_get_their_time():
    lines = ["Nov 23 03:14:15 h p: a"] * 3 + ["Nov 23 03:14:16 h p: b"] * 2 + ["Nov 23 03:14:15 h p: c"]
    out = env(lines)
    assert [t.second for t in out["timestamp"]] == [15, 15, 15, 16, 16, 15]


def test_year_override_counts_a_new_year_once_per_drop_within_runs():
    lines = ["Dec 31 23:59:59 h p: a"] * 2 + ["Jan  1 00:00:00 h p: b"] * 3 + ["Jan  1 00:00:01 h p: c"]
    out = env(lines, year=2020, year_state={})
    assert [t.year for t in out["timestamp"]] == [2020, 2020, 2021, 2021, 2021, 2021]
