"""Inputs: expansion, rotation order, compression, tabular inputs and every kind of bad input."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
from pathlib import Path

import polars as pl
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.config import IngestConfig
from detector.errors import InputError, SchemaError
from detector.ingest import ingest
from detector.ingest.sources import expand, file_sha256, rotation_key
from tests.ingest_helpers import run, write_log

GOOD = "Nov 22 10:00:01 mx1 dovecot: auth: passwd-file(ann@x.org,192.0.2.50): Password mismatch"


def good_lines(n: int) -> list[str]:
    return [
        f"Nov 22 10:{i // 60 % 60:02d}:{i % 60:02d} mx1 dovecot: auth: passwd-file(u{i}@x.org,192.0.2.50): Password mismatch"
        for i in range(n)
    ]


def ingest_paths(tmp_path: Path, paths: list, **cfg):
    return ingest([str(p) for p in paths], IngestConfig(**cfg), tmp_path / "work")


def test_rotation_key_orders_oldest_first():
    names = ["mail.log", "mail.log.1", "mail.log.10.gz", "mail.log.2.gz"]
    assert sorted(names, key=rotation_key) == ["mail.log.10.gz", "mail.log.2.gz", "mail.log.1", "mail.log"]
    assert sorted(["m-20261121", "m-20261120.gz"], key=rotation_key) == ["m-20261120.gz", "m-20261121"]


def test_directory_is_recursive_and_rotation_ordered(tmp_path):
    d = tmp_path / "logs"
    (d / "sub").mkdir(parents=True)
    write_log(d / "mail.log", [GOOD])
    (d / "mail.log.1").write_text(GOOD + "\n")
    (d / "mail.log.2.gz").write_bytes(gzip.compress((GOOD + "\n").encode()))
    write_log(d / "sub" / "other.log", [GOOD])
    got = [Path(f.path).name for f in expand([str(d)])]
    assert got == ["mail.log.2.gz", "mail.log.1", "mail.log", "other.log"]


def test_glob(tmp_path):
    for name in ("a.log", "b.log", "c.txt"):
        write_log(tmp_path / name, [GOOD])
    assert [Path(f.path).name for f in expand([str(tmp_path / "*.log")])] == ["a.log", "b.log"]


@pytest.mark.parametrize("arg", ["nope.log", "nothing-*.log"])
def test_missing_path_is_an_input_error(tmp_path, arg):
    with pytest.raises(InputError) as e:
        expand([str(tmp_path / arg)])
    assert str(tmp_path / arg) in str(e.value)


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress), (".zst", zstandard.compress)],
)
def test_compressed_inputs(tmp_path, suffix, compress):
    path = tmp_path / f"mail.log{suffix}"
    path.write_bytes(compress("\n".join(good_lines(50)).encode() + b"\n"))
    result = ingest_paths(tmp_path, [path])
    assert result.lines_read == 50
    assert result.events.collect()["line_number"].to_list() == list(range(1, 51))
    assert result.inputs[0][0] == str(path) and len(result.inputs[0][2]) == 64


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BufferedReader(io.BytesIO(data))


@pytest.mark.parametrize(
    "compress",
    [lambda b: b, gzip.compress, bz2.compress, lzma.compress, zstandard.compress],
    ids=["plain", "gz", "bz2", "xz", "zst"],
)
def test_compressed_stdin_is_recognised_by_its_magic(tmp_path, monkeypatch, compress):
    data = compress("\n".join(good_lines(50)).encode() + b"\n")
    monkeypatch.setattr("sys.stdin", _Stdin(data))
    result = ingest(["-"], IngestConfig(), tmp_path / "w")
    assert result.lines_read == 50 and result.events.collect().height == 50
    assert result.inputs[0][1] == len(data) and result.inputs[0][2] == hashlib.sha256(data).hexdigest()


def test_short_stdin_is_read_as_text(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", _Stdin(b"\x1f"))
    with pytest.raises(InputError, match="no recognisable"):
        ingest(["-"], IngestConfig(), tmp_path / "w")


LONG = (
    "\n".join(
        line.replace("@x.org", f"-{hashlib.sha256(line.encode()).hexdigest()[:24]}@x.org")
        for line in good_lines(3000)
    ).encode()
    + b"\n"
)
"""Poorly compressible lines (a hash in each name), so that the damage lands after the first piece."""
FORMATS = {
    ".gz": gzip.compress,
    ".bz2": lambda b: bz2.compress(b, 1),  # 100 kB blocks: bzip2 recovers whole blocks only
    ".xz": lzma.compress,
    ".zst": lambda b: zstandard.ZstdCompressor(write_content_size=False).compress(b),
}


def _bz2_blocks(data: bytes) -> bytes:
    """Two bzip2 streams, so that a cut in the second one leaves a whole first stream to recover."""
    half = len(data) // 2
    cut = data.rindex(b"\n", 0, half) + 1
    return bz2.compress(data[:cut], 1) + bz2.compress(data[cut:], 1)


@pytest.mark.parametrize("suffix", sorted(FORMATS))
@pytest.mark.parametrize("keep", [0.9, 0.98])  # zstd: a 128 kB block must be whole
def test_truncated_archive_keeps_every_line_before_the_break(tmp_path, suffix, keep):
    data = _bz2_blocks(LONG) if suffix == ".bz2" else FORMATS[suffix](LONG)
    path = tmp_path / f"mail.log{suffix}"
    path.write_bytes(data[: int(len(data) * keep)])
    result = ingest_paths(tmp_path, [path])  # the default chunk (16 MiB) holds the whole file
    events = result.events.collect()
    n = events.height
    assert n > 0, "the lines before the break are kept"
    assert events["line_number"].to_list() == list(range(1, n + 1))
    q = result.quarantine.filter(reason="truncated_archive")
    assert q.select("source_file", "line_number").rows() == [(str(path), n + 1)]
    assert LONG.decode().splitlines()[n].startswith(q["raw"][0]), "the cut line is quarantined, not parsed"
    warning = next(w for w in result.warnings if "truncated archive" in w)
    assert str(path) in warning and f"kept the {n:,} line(s)" in warning


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_corrupt_archive_keeps_the_lines_before_the_damage(tmp_path, suffix):
    data = bytearray(_bz2_blocks(LONG) if suffix == ".bz2" else FORMATS[suffix](LONG))
    at = int(len(data) * 0.7)
    data[at : at + 64] = b"\xa5" * 64
    path = tmp_path / f"mail.log{suffix}"
    path.write_bytes(bytes(data))
    result = ingest_paths(tmp_path, [path])
    assert 0 < result.events.collect().height < 3000
    assert result.quarantine.filter(reason="truncated_archive").height == 1


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_whole_concatenated_and_padded_archives_are_not_truncated(tmp_path, suffix):
    compress = FORMATS[suffix]
    data = compress(LONG[:50_000]) + compress(LONG[50_000:])
    if suffix == ".gz":
        data += b"\0" * 512  # padding after the last member, as gzip accepts
    path = tmp_path / f"mail.log{suffix}"
    path.write_bytes(data)
    result = ingest_paths(tmp_path, [path], chunk_bytes=4096)
    assert result.events.collect().height == 3000
    assert result.quarantine.height == 0 and not result.warnings


def test_truncated_archive_on_stdin(tmp_path, monkeypatch):
    data = gzip.compress(LONG)
    monkeypatch.setattr("sys.stdin", _Stdin(data[: len(data) // 2]))
    result = ingest(["-"], IngestConfig(), tmp_path / "w")
    assert 0 < result.events.collect().height < 3000
    assert result.quarantine.filter(reason="truncated_archive")["source_file"].to_list() == ["-"]


def test_binary_junk_is_quarantined_and_the_run_goes_on(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(b for b in range(256) if b != 10) * 40 + b"\n\x00\x01\x02\n")
    good = write_log(tmp_path / "mail.log", [GOOD])
    result = ingest_paths(tmp_path, [junk, good])
    assert result.events.collect().height == 1
    assert set(result.quarantine["reason"]) <= {"no_envelope", "invalid_utf8"}
    assert result.quarantine.height == 2


def test_lines_without_envelope_keep_their_text_and_number(tmp_path):
    path = write_log(tmp_path / "mail.log", [GOOD, "no stamp here", GOOD, "  also none"])
    q = ingest_paths(tmp_path, [path]).quarantine
    assert q.select("line_number", "reason", "raw").rows() == [
        (2, "no_envelope", "no stamp here"),
        (4, "no_envelope", "  also none"),
    ]


def test_invalid_utf8(tmp_path):
    path = tmp_path / "mail.log"
    path.write_bytes(
        b"Nov 22 10:00:01 mx1 dovecot: auth: passwd-file(j\xffrg@x.org,192.0.2.51): Password mismatch\n"
        b"Nov 22 10:00:02 mx1 dovecot: master: \xfe\xfe odd\n"
    )
    result = ingest_paths(tmp_path, [path])
    ev = result.events.collect()
    assert ev["account"].to_list() == ["j\ufffdrg@x.org"]
    q = result.quarantine
    assert q["reason"].to_list() == ["invalid_utf8"] and q["line_number"].to_list() == [2]


def test_megabyte_line(tmp_path):
    path = tmp_path / "mail.log"
    path.write_text(GOOD + "\n" + "A" * 2_000_000 + "\n" + GOOD + "\n", encoding="utf-8")
    result = ingest_paths(tmp_path, [path], chunk_bytes=65536, max_line_bytes=100_000)
    assert result.events.collect()["line_number"].to_list() == [1, 3]
    q = result.quarantine
    assert q["reason"].to_list() == ["too_long"] and q["line_number"].to_list() == [2]
    assert len(q["raw"][0]) == 4096


def test_long_line_inside_one_chunk(tmp_path):
    path = tmp_path / "mail.log"
    path.write_text(GOOD + "\n" + "B" * 5000 + "\n" + GOOD + "\n", encoding="utf-8")
    result = ingest_paths(tmp_path, [path], max_line_bytes=1000)
    assert result.quarantine["line_number"].to_list() == [2]
    assert result.events.collect().height == 2


def test_empty_file_is_a_warning(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    result = ingest_paths(tmp_path, [empty])
    assert result.lines_read == 0 and result.events.collect().is_empty()
    assert any("empty" in w for w in result.warnings)


def test_unknown_format_alone_is_an_input_error(tmp_path):
    path = write_log(tmp_path / "x.log", ["just some text", "and more"])
    with pytest.raises(InputError, match="no recognisable"):
        ingest_paths(tmp_path, [path])


def test_other_programs_are_counted_noise(tmp_path):
    ev, result = run(tmp_path, [GOOD, "Nov 22 10:00:02 mx1 sshd[3]: Accepted publickey for root"])
    assert len(ev) == 1 and result.noise == {"noise:unclaimed": 1}


def test_tabular_parquet_and_csv_inputs(tmp_path):
    ev, _ = run(tmp_path, [GOOD])
    pq = tmp_path / "ev.parquet"
    ev.write_parquet(pq)
    csv = tmp_path / "ev.csv"
    ev.write_csv(csv)
    back = ingest_paths(tmp_path, [pq, csv], chunk_bytes=4096).events.collect()
    assert back.height == 2 and back["account"].to_list() == ["ann@x.org", "ann@x.org"]


def test_tabular_input_missing_a_column(tmp_path):
    ev, _ = run(tmp_path, [GOOD])
    bad = tmp_path / "bad.csv"
    ev.drop("source_ip").write_csv(bad)
    with pytest.raises(SchemaError, match="source_ip"):
        ingest_paths(tmp_path, [bad])


def test_quarantine_schema(tmp_path):
    _, result = run(tmp_path, [GOOD, "junk"])
    from detector.schema import QUARANTINE_SCHEMA

    assert result.quarantine.schema == QUARANTINE_SCHEMA
    assert isinstance(result.quarantine, pl.DataFrame)


def test_quarantine_kept_rows_are_bounded_but_all_counted(tmp_path, monkeypatch):
    import detector.ingest as ing

    monkeypatch.setattr(ing, "QUARANTINE_KEEP", 2)
    _, result = run(tmp_path, [GOOD, "junk 1", "junk 2", "junk 3", "junk 4"])
    assert result.quarantine.height == 2 and result.quarantined == 4
    assert any("4 lines quarantined" in w for w in result.warnings)
    assert re.search(r"^quarantined +4$", result.summary_text(), re.M)


@pytest.mark.parametrize("suffix", sorted(FORMATS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 1.0), lines=st.integers(1, 400))
def test_a_cut_anywhere_keeps_a_prefix_of_whole_lines(tmp_path, suffix, cut, lines):
    """Whatever the cut: the lines read are the file's first lines, unchanged, and the break is recorded."""
    from detector.ingest.sources import InputFile, ReadLog, read_lines

    text = LONG.splitlines(keepends=True)[:lines]
    data = FORMATS[suffix](b"".join(text))
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: int(len(data) * cut)])
    log = ReadLog()
    got = pl.concat(
        [f.select("raw") for f in read_lines(InputFile(str(path), None, None), 4096, 65536, log)]
        or [pl.DataFrame({"raw": []}, schema={"raw": pl.String})]
    )
    assert got["raw"].to_list() == [t.decode().rstrip("\n") for t in text[: got.height]]
    kept = int(len(data) * cut)
    assert (log.quarantine == []) == (kept in (0, len(data)))  # an empty file is not a broken one


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1])
def test_file_sha256_hashes_every_block(tmp_path, size):
    p = tmp_path / "f"
    p.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    assert file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
