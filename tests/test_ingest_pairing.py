"""Dovecot logouts take their login's address within a memory budget (detector/ingest/logouts.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.config import IngestConfig
from detector.ingest import ingest
from detector.ingest.logouts import LogoutPairing
from tests.ingest_helpers import write_log

START = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)
MTIME = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def stamp(t: datetime) -> str:
    return f"{t:%b} {t.day:2d} {t:%H:%M:%S}"


def login(t: datetime, host: str, user: str, ip: str, session: str) -> str:
    return (
        f"{stamp(t)} {host} dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, "
        f"lip=192.0.2.1, mpid=4711, TLS, session=<{session}>"
    )


def logout(t: datetime, host: str, user: str, session: str) -> str:
    return f"{stamp(t)} {host} dovecot: imap({user})<4711><{session}>: Disconnected: Logged out in=10 out=20"


def night(seed: int, sessions: int) -> list[tuple[datetime, str]]:
    """Sessions over midnight: two hosts, reused session ids, logouts up to 14 h after the login
    (some beyond the 12 h memory), logouts without a login, two logins of one session."""
    rng = random.Random(seed)
    lines = []
    for i in range(sessions):
        host = rng.choice(["mx1", "mx2"])
        sid = f"S{rng.randrange(sessions // 2 + 1)}"
        user, ip = f"u{i}@x.org", f"198.51.100.{rng.randrange(1, 250)}"
        t = START + timedelta(seconds=rng.randrange(4 * 3600))
        if rng.random() < 0.9:
            lines.append((t, login(t, host, user, ip, sid)))
        if rng.random() < 0.1:
            t2 = t + timedelta(seconds=rng.randrange(5))
            lines.append((t2, login(t2, host, user, f"203.0.113.{i % 250}", sid)))
        end = t + timedelta(seconds=rng.choice([0, 1, 30, 600, 4 * 3600, 13 * 3600]))
        lines.append((end, logout(end, host, user, sid)))
    lines.sort(key=lambda x: x[0])
    return lines


def ingest_files(tmp: Path, files: list[list[str]], **cfg) -> pl.DataFrame:
    tmp.mkdir(parents=True, exist_ok=True)
    paths = [
        str(write_log(tmp / f"mail.log.{len(files) - k}", lines, MTIME)) for k, lines in enumerate(files)
    ]
    result = ingest(paths, IngestConfig(**cfg), tmp / "work")
    assert not list((tmp / "work").glob(".pairing-*")), "spill files left behind"
    # the same names in both runs' directories
    return result.events.collect().with_columns(pl.col("source_file").str.replace(r".*/", ""))


def split(lines: list[tuple[datetime, str]], cut: datetime) -> list[list[str]]:
    return [[s for t, s in lines if t < cut], [s for t, s in lines if t >= cut]]


MIDNIGHT = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_tiny_budget_gives_the_events_of_an_unlimited_one(tmp_path, seed):
    files = split(night(seed, 600), MIDNIGHT)
    big = ingest_files(tmp_path / "big", files, chunk_bytes=1 << 20)
    tiny = ingest_files(tmp_path / "tiny", files, chunk_bytes=4096, pairing_memory_bytes=4096)
    assert big.equals(tiny)
    logouts = big.filter(action="logout")
    assert logouts["source_ip"].null_count() not in (0, len(logouts))  # some filled, some not


def expected(lines: list[tuple[datetime, str]]) -> dict[tuple, str | None]:
    """The rule in plain Python: the last login of (host, session) at most 12 h before the logout."""
    out = {}
    for t, s in lines:
        if "Logged out" not in s:
            continue
        host, session = s.split()[3], s.split("><")[1].split(">")[0]
        best = None
        for t2, s2 in lines:
            same = "Login:" in s2 and s2.split()[3] == host and f"session=<{session}>" in s2
            if same and t - timedelta(hours=12) <= t2 <= t:
                best = s2.split("rip=")[1].split(",")[0]
        out[(host, s.split("imap(")[1].split(")")[0], t)] = best
    return out


def test_each_logout_takes_its_last_login_within_12_hours(tmp_path):
    lines = night(4, 200)
    files = split(lines, MIDNIGHT)
    ev = ingest_files(tmp_path, files, chunk_bytes=4096, pairing_memory_bytes=2048)
    got = {
        (r["host"], r["account"], r["timestamp"]): r["source_ip"]
        for r in ev.filter(action="logout").iter_rows(named=True)
    }
    assert got == expected(lines)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), sessions=st.integers(1, 60), cut=st.integers(0, 4 * 3600))
def test_pairing_does_not_depend_on_budget_batches_or_files(tmp_path_factory, seed, sessions, cut):
    tmp = tmp_path_factory.mktemp("p")
    lines = night(seed, sessions)
    one = ingest_files(tmp / "one", [[s for _, s in lines]], chunk_bytes=1 << 20)
    two = ingest_files(
        tmp / "two", split(lines, START + timedelta(seconds=cut)), chunk_bytes=2048, pairing_memory_bytes=1024
    )
    where = ["source_file", "line_number"]  # one file against two
    assert one.drop(where).equals(two.drop(where))


@pytest.mark.parametrize(("budget", "parts"), [(1 << 40, 1), (64, 256)])
def test_the_budget_sets_the_partitions(tmp_path, budget, parts):
    lines = [s for _, s in night(5, 400)]
    pairing = LogoutPairing(tmp_path, budget)
    write_log(tmp_path / "mail.log", lines, MTIME)
    events = ingest([str(tmp_path / "mail.log")], IngestConfig(), tmp_path / "w").events.collect()
    pairing.record(events.with_columns(pl.lit(None, pl.String).alias("source_ip")), 0)
    pairing.close()
    assert pairing.partitions() == parts
    pairing.discard()
    assert not pairing.dir.exists()


def _fills(tmp: Path, events: pl.DataFrame, parts: int) -> pl.DataFrame:
    pairing = LogoutPairing(tmp, 1 << 20)
    pairing.record(events, 0)
    pairing.close()
    try:
        filled = pairing._pair(parts, 1 << 40)
        path = pairing.dir / "fill-0.parquet"
        fills = pl.read_parquet(path).sort("_pos") if path.exists() else pl.DataFrame()
        assert len(fills) == filled
        return fills
    finally:
        pairing.discard()


def test_partitions_split_first_or_read_in_place_pair_the_same(tmp_path):
    """Below ``SPLIT_FROM`` partitions each reads the spill files and keeps its rows; from it on,
    the spill files are split into one file per partition first. Both give the same fills, and so
    does one partition."""
    from detector.ingest.logouts import SPLIT_FROM

    write_log(tmp_path / "mail.log", [s for _, s in night(9, 800)], MTIME)
    events = ingest([str(tmp_path / "mail.log")], IngestConfig(), tmp_path / "w").events.collect()
    # the logouts as spilled before their login's address was filled in
    logouts = pl.col("action") == "logout"
    events = events.with_columns(
        pl.when(logouts).then(None).otherwise(pl.col(c)).alias(c) for c in ("source_ip", "local_ip", "tls")
    )
    one = _fills(tmp_path, events, 1)
    assert len(one) > 100
    for parts in (3, SPLIT_FROM - 1, SPLIT_FROM, 37):
        assert _fills(tmp_path, events, parts).equals(one), parts


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.integers(1, 4)),
        max_size=8,
    )
)
def test_a_batch_skips_its_sort_only_where_sorting_changes_nothing(rows):
    """The writer sorts each batch by (time, line) unless it is already in that order."""
    from detector.ingest import _in_order
    from detector.schema import C

    df = pl.DataFrame(
        {
            C.TIMESTAMP: [
                None if t is None else datetime(2026, 11, 23, 0, 0, t, tzinfo=UTC) for t, _ in rows
            ],
            C.LINE_NUMBER: [n for _, n in rows],
            "i": list(range(len(rows))),
        },
        schema_overrides={C.TIMESTAMP: pl.Datetime("us", "UTC"), C.LINE_NUMBER: pl.Int64},
    )
    if _in_order(df):
        assert df.sort(C.TIMESTAMP, C.LINE_NUMBER, maintain_order=True, nulls_last=True).equals(df)


@pytest.mark.parametrize(
    ("times", "lines", "ordered"),
    [
        ([1, 2, 3], [1, 2, 3], True),
        ([1, 1, 2], [1, 2, 3], True),
        ([1, 1, 2], [2, 1, 3], False),
        ([2, 1], [1, 2], False),
        ([1, None], [1, 2], False),
        ([], [], True),
    ],
)
def test_in_order(times, lines, ordered):
    from detector.ingest import _in_order
    from detector.schema import C

    df = pl.DataFrame(
        {
            C.TIMESTAMP: [None if t is None else datetime(2026, 11, 23, 0, 0, t, tzinfo=UTC) for t in times],
            C.LINE_NUMBER: lines,
        },
        schema_overrides={C.TIMESTAMP: pl.Datetime("us", "UTC"), C.LINE_NUMBER: pl.Int64},
    )
    assert _in_order(df) is ordered
