"""Ingestion in worker processes gives what one process gives (``ingest(..., workers=N)``)."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

import detector.ingest as ingest_mod
from bench.loggen import generate
from detector.config import Config, IngestConfig
from detector.ingest import ingest

MTIME = datetime(2026, 11, 21, 12, 0, tzinfo=UTC).timestamp()
JUNK = [
    b"not a log line at all",
    b"Nov 20 03:00:01 mx1 dovecot: imap-login: Login: user=<\xff\xfe>, method=PLAIN, rip=198.51.100.7, session=<Q1>",
    b"Nov 20 03:00:02 mx1 postfix/smtpd[1]: warning: unknown[999.1.1.1]: SASL LOGIN authentication failed: x",
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """Both bench profiles (the IMAP one gzipped), junk in the middle of a file, two inputs."""
    root = tmp_path_factory.mktemp("w")
    imap, mta = root / "imap.log", root / "mail.log"
    generate(imap, 3000, seed=3, profile="imap")
    generate(mta, 2000, seed=4, profile="mta")
    lines = mta.read_bytes().splitlines(keepends=True)[:2000]
    mta.write_bytes(b"".join(lines[:1000]) + b"\n".join(JUNK) + b"\n" + b"".join(lines[1000:]))
    with gzip.open(root / "imap.log.gz", "wb") as f:
        f.write(b"".join(imap.read_bytes().splitlines(keepends=True)[:3000]))
    imap.unlink()
    paths = [root / "imap.log.gz", mta]
    for p in paths:
        os.utime(p, (MTIME, MTIME))
    return [str(p) for p in paths]


def outcome(tmp: Path, paths: list[str], workers: int) -> tuple:
    result = ingest(paths, IngestConfig(chunk_bytes=64 * 1024, kernel="off"), tmp, workers=workers)
    return result.events.collect(), result.quarantine, result.noise, result.lines_read, result.warnings


@pytest.mark.slow
def test_worker_processes_give_the_events_of_one(tmp_path, inputs, monkeypatch):
    monkeypatch.setattr(ingest_mod, "PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(ingest_mod, "PROCESS_MIN_CORES", 1)
    started = []
    real = ingest_mod._processes
    monkeypatch.setattr(ingest_mod, "_processes", lambda n: started.append(n) or real(n))
    one = outcome(tmp_path / "1", inputs, 1)
    assert len(one[0]) > 2000 and len(one[1]) >= 2 and one[2]["noise:merged"] > 0
    assert one[0].filter(action="logout")["source_ip"].null_count() == 0
    for n in (2, 3):
        other = outcome(tmp_path / str(n), inputs, n)
        assert other[0].equals(one[0])  # events, their order, the logouts' addresses
        assert other[1].equals(one[1])  # quarantine with file and line numbers
        assert other[2:] == one[2:]  # noise counts, lines read, warnings
    assert started == [2, 3]


def test_small_inputs_stay_in_one_process(tmp_path, inputs, monkeypatch):
    started = []
    monkeypatch.setattr(ingest_mod, "_processes", lambda n: started.append(n))
    ingest(inputs, IngestConfig(), tmp_path, workers=4)
    assert started == []


@pytest.mark.parametrize(("cores", "expected"), [(2, []), (8, [2])])
def test_parse_workers_start_only_on_many_cores(tmp_path, inputs, monkeypatch, cores, expected):
    """On 2 cores this process's threads parse beside the one that correlates and writes: parse
    workers only added CPU there (PROCESS_MIN_CORES)."""
    started = []
    monkeypatch.setattr(ingest_mod, "PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(ingest_mod, "available_cores", lambda: cores)
    monkeypatch.setattr(ingest_mod, "_processes", lambda n: started.append(n) or _Inline())
    ingest(inputs, IngestConfig(), tmp_path, workers=2)
    assert started == expected


class _Inline:
    """An executor that runs each job at once (stands in for the worker processes)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*args, **kwargs))
        return f


def test_the_worker_count_is_not_part_of_the_configuration_digest():
    cfg = Config()
    assert cfg.replace(engine={"workers": 1}).digest() == cfg.replace(engine={"workers": 7}).digest()
    assert cfg.replace(ingest={"chunk_bytes": 4096}).digest() != cfg.digest()


def test_zero_workers_means_the_cores_available():
    assert Config().replace(engine={"workers": 0}).engine.resolved_workers() == len(os.sched_getaffinity(0))


def test_one_process_by_default():
    assert Config().engine.resolved_workers() == 1
