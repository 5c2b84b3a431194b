"""A fixed ``--year`` read in batches in parallel and through the kernel gives the years one pass
over the whole file gives (the New Year state each batch starts from is read before parsing)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import detector.ingest as ingest_mod
from detector.config import IngestConfig
from detector.ingest import envelope, ingest
from detector.schema import C
from tests.ingest_helpers import write_log

LOGIN = "imap-login: Login: user=<alice@example.org>, method=PLAIN, rip=203.0.113.7, lip=192.0.2.10, mpid=812, TLS, session=<AbCd+/Ef12>"
LOGOUT = "imap(alice@example.org)<812><AbCd+/Ef12>: Logged out in=10 out=20"
FAILED = "auth: passwd-file(bob,198.51.100.9): unknown user"


def _stamp(day: date, second: int) -> str:
    return f"{day:%b} {day.day:>2} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


def _lines(days: list[date]) -> list[str]:
    kinds = [LOGIN, LOGOUT, FAILED]
    return [f"{_stamp(d, 3600 + i)} mx1 dovecot: {kinds[i % 3]}" for i, d in enumerate(days)]


def _read(tmp, lines: list[str], *, kernel: str, chunk: int, timezone: str = "UTC") -> tuple:
    log = write_log(tmp / "mail.log", lines)
    cfg = IngestConfig(year=2026, kernel=kernel, chunk_bytes=chunk, timezone=timezone)
    r = ingest([str(log)], cfg, tmp / f"w-{kernel}-{chunk}")
    return r.events.collect(), r.quarantine, r.noise, (r.lines_read, r.claimed, r.quarantined)


def _same(a: tuple, b: tuple) -> None:
    assert_frame_equal(a[0], b[0])
    assert_frame_equal(a[1], b[1])
    assert a[2:] == b[2:]


DAYS = st.lists(
    st.integers(0, 500).map(lambda k: date(2025, 10, 1) + timedelta(days=k)), min_size=1, max_size=40
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=DAYS, chunk=st.sampled_from([1024, 2048, 4096]))
def test_batches_and_kernel_read_the_years_of_one_pass(tmp_path_factory, days, chunk):
    """Any sequence of days (crossings, going back, several years) in batches of a few lines,
    kernel on, two parse threads: what the envelope gives in one batch with the kernel off."""
    tmp = tmp_path_factory.mktemp("y")
    lines = _lines(sorted(days) if len(days) % 2 else days)
    one = _read(tmp, lines, kernel="off", chunk=1 << 30)
    _same(_read(tmp, lines, kernel="on", chunk=chunk), one)


def test_new_year_crossing_moves_on_in_later_batches(tmp_path):
    days = [date(2026, 12, 31)] * 30 + [date(2027, 1, 1)] * 30 + [date(2027, 1, 2)] * 30
    events, *_ = _read(tmp_path, _lines(days), kernel="on", chunk=1024)
    years = events.group_by(events[C.TIMESTAMP].dt.year().alias("y")).len().sort("y")
    assert years.rows() == [(2026, 30), (2027, 60)]


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Paris", "Pacific/Kiritimati"])
def test_last_second_of_the_year_stays_in_it(tmp_path, timezone):
    lines = [f"Dec 31 23:59:59 mx1 dovecot: {LOGIN}", f"Jan  1 00:00:00 mx1 dovecot: {FAILED}"]
    _same(
        _read(tmp_path, lines, kernel="on", chunk=1024, timezone=timezone),
        _read(tmp_path, lines, kernel="off", chunk=1 << 30, timezone=timezone),
    )


def test_steady_batches_go_through_the_kernel(tmp_path, monkeypatch):
    calls = []
    real = ingest_mod.kernel.split
    monkeypatch.setattr(ingest_mod.kernel, "split", lambda *a, **k: calls.append(1) or real(*a, **k))
    _read(tmp_path, _lines([date(2026, 11, 20)] * 200), kernel="on", chunk=4096)
    assert len(calls) > 2


@pytest.mark.parametrize(
    ("months", "before", "after", "steady"),
    [
        ([], {}, {}, True),
        (["Nov", "Nov", "Dec"], {}, {"month": 12, "crossed": 0}, True),
        (["Dec", "Jan"], {}, {"month": 1, "crossed": 1}, False),
        (["Jan"], {"month": 12, "crossed": 0}, {"month": 1, "crossed": 1}, False),
        (["Feb"], {"month": 1, "crossed": 1}, {"month": 2, "crossed": 1}, False),
        (["Mar", "Feb"], {}, {"month": 2, "crossed": 0}, False),  # back, but no crossing
        (["Foo", "Nov"], {"month": 10, "crossed": 0}, {"month": 11, "crossed": 0}, True),
    ],
)
def test_advance_year(months, before, after, steady):
    state = dict(before)
    raw = pl.Series([f"{m} 20 03:00:00 h p: x" for m in months] + ["2026-11-20 03:00:00 h p: y"])
    start, got = envelope.advance_year(raw, state)
    assert (start, state, got) == (before, {**before, **after}, steady)
