"""Reading inputs: expand paths, decompress, and cut the bytes into batches of numbered lines.

Text inputs become frames of (``source_file``, ``line_number``, ``raw``, ``invalid_utf8``), one
per ``chunk_bytes`` of decompressed text cut at the last newline, so memory is bounded by the
chunk size whatever the file size. Problems that concern bytes rather than lines (a truncated
compressed stream, a line longer than ``max_line_bytes`` that spans chunks) become quarantine
records instead of errors: the run goes on with what could be read.

Tabular inputs (``.parquet``, ``.csv``, ``.jsonl``/``.ndjson``) already hold canonical events and
are read as they are, after a schema check.
"""

from __future__ import annotations

import bz2
import glob
import hashlib
import io
import lzma
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import polars as pl

from detector.errors import InputError, SchemaError, did_you_mean
from detector.schema import EVENT_SCHEMA, C, check, conform

RAW_CUT = 4096
"""Quarantined raw text is cut to this many bytes."""
STDIN = "-"
COMPRESSED = (".gz", ".bz2", ".xz", ".zst")
TABULAR = (".parquet", ".csv", ".jsonl", ".ndjson")
LINE_SCHEMA = pl.Schema(
    {C.SOURCE_FILE: pl.String, C.LINE_NUMBER: pl.Int64, C.RAW: pl.String, "invalid_utf8": pl.Boolean}
)


@dataclass(frozen=True)
class InputFile:
    """One input as found on disk (or stdin)."""

    path: str
    size: int | None
    mtime: datetime | None

    @property
    def is_table(self) -> bool:
        return _suffix(self.path) in TABULAR


@dataclass
class ReadLog:
    """What reading one input observed besides its lines (filled while the batches stream)."""

    sha256: str = ""
    bytes_read: int = 0
    lines: int = 0
    quarantine: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_ROTATION = re.compile(r"^(?P<base>.*?)(?:\.(?P<n>\d+))?(?P<comp>\.(?:gz|bz2|xz|zst))?$")
_DATED = re.compile(r"^(?P<base>.*?)-(?P<date>\d{8}(?:\d{2})?)(?P<comp>\.(?:gz|bz2|xz|zst))?$")


def rotation_key(path: str) -> tuple:
    """Sort key that puts a rotated set oldest first: ``x.2.gz``, ``x.1``, ``x``; ``x-20261121``, ``x``."""
    name = str(path)
    dated = _DATED.match(name)
    if dated:
        return (dated["base"], 0, 0, dated["date"])
    m = _ROTATION.match(name)
    assert m is not None
    if m["n"] is None:
        return (m["base"], 1, 0, "")
    return (m["base"], 0, -int(m["n"]), "")


def _suffix(path: str) -> str:
    name = path.lower()
    for ext in COMPRESSED:
        if name.endswith(ext):
            name = name[: -len(ext)]
    return Path(name).suffix


def expand(paths: list[str] | tuple[str, ...]) -> list[InputFile]:
    """Files named, found under directories (recursively) or matched by globs, plus ``-``.

    Each argument keeps its place; the files one argument yields are in rotation order, oldest
    first. A path that matches nothing is an :class:`InputError`.
    """
    out: list[InputFile] = []
    seen: set[str] = set()
    for arg in paths:
        arg = str(arg)
        if arg == STDIN:
            out.append(InputFile(STDIN, None, None))
            continue
        p = Path(arg)
        if p.is_dir():
            found = [str(f) for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")]
        elif p.exists():
            found = [arg]
        elif glob.has_magic(arg):
            found = [f for f in glob.glob(arg, recursive=True) if Path(f).is_file()]
            if not found:
                raise InputError("no file matches this pattern", path=arg)
        else:
            raise InputError("no such file or directory", path=arg)
        for f in sorted(found, key=rotation_key):
            if f in seen:
                continue
            seen.add(f)
            st = os.stat(f)
            out.append(InputFile(f, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
    if not out:
        raise InputError(f"no input files in {', '.join(map(str, paths)) or 'the arguments'}")
    return out


class _Stream:
    """The file-object methods the decompressors call, built on ``read``."""

    def read(self, n: int = -1) -> bytes:
        raise NotImplementedError

    def readinto(self, b) -> int:  # used by gzip/bz2/lzma
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def flush(self) -> None:
        pass


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes as stored (what :class:`_Hashing` gives for a file read as text)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Hashing(_Stream):
    """A read-through wrapper that hashes and counts the bytes of the file as stored."""

    def __init__(self, raw: BinaryIO, log: ReadLog) -> None:
        self.raw = raw
        self.log = log
        self.h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.h.update(data)
        self.log.bytes_read += len(data)
        return data

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return self.raw.closed


class _Prefixed(_Stream):
    """A stream with the bytes already read from it (to sniff its format) put back in front."""

    def __init__(self, head: bytes, rest: _Hashing) -> None:
        self.head = head
        self.rest = rest

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(n)
        if n is None or n < 0:
            out, self.head = self.head + self.rest.read(), b""
            return out
        out, self.head = self.head[:n], self.head[n:]
        return out if len(out) == n else out + self.rest.read(n - len(out))

    def close(self) -> None:
        """Leaves stdin open, as reading an uncompressed stdin always did."""

    @property
    def closed(self) -> bool:
        return self.rest.closed


MAGIC = ((b"\x1f\x8b", ".gz"), (b"BZh", ".bz2"), (b"\xfd7zXZ\x00", ".xz"), (b"\x28\xb5\x2f\xfd", ".zst"))
"""Leading bytes of each compressed format, for stdin (files go by their name)."""


def _sniff(hashed: _Hashing) -> tuple[_Prefixed, str]:
    """Read up to 6 bytes of stdin and tell its compression ("" for none) by their magic."""
    head = b""
    while len(head) < 6:
        more = hashed.read(6 - len(head))
        if not more:
            break
        head += more
    kind = next((ext for magic, ext in MAGIC if head.startswith(magic)), "")
    return _Prefixed(head, hashed), kind


def _open(inp: InputFile, log: ReadLog) -> tuple[_Hashing, BinaryIO]:
    if inp.path == STDIN:
        raw: BinaryIO = sys.stdin.buffer
    else:
        try:
            raw = open(inp.path, "rb")  # noqa: SIM115  (closed by the caller)
        except OSError as e:
            raise InputError(f"cannot read: {e.strerror}", path=inp.path) from e
    hashed = _Hashing(raw, log)
    source: _Hashing | _Prefixed = hashed
    if inp.path == STDIN:
        source, kind = _sniff(hashed)
    else:
        name = inp.path.lower()
        kind = next((ext for ext in COMPRESSED if name.endswith(ext)), "")
    if kind in DECOMPRESSORS:
        return hashed, _Decompressing(source, kind)  # type: ignore[return-value]
    return hashed, source  # type: ignore[return-value]


class TruncatedArchive(Exception):
    """A compressed input whose stream breaks off (or turns into garbage) before its end marker."""


def _zstd() -> object:
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


DECOMPRESSORS = {
    ".gz": lambda: zlib.decompressobj(wbits=zlib.MAX_WBITS | 32),  # gzip header and trailer checked
    ".bz2": bz2.BZ2Decompressor,
    ".xz": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_AUTO),
    ".zst": _zstd,
}
"""An incremental decompressor per format: one object per member (gzip), stream (bz2, xz) or frame (zstd)."""

COMPRESSED_READ = 256 * 1024
"""Compressed bytes read from the file at a time."""
COMPRESSED_PIECE = 4096
"""Compressed bytes fed to a decompressor per call: what damage in the middle of a file can cost
besides the damaged part (a failing call returns nothing)."""


class _Decompressing(_Stream):
    """Decompressed bytes of a (possibly multi-member) compressed stream, fed block by block.

    Unlike ``gzip.GzipFile`` and friends, which drop the output of the read that meets a broken or
    missing end, every byte that decompressed before the break is returned first; the next read
    raises :class:`TruncatedArchive`. Concatenated members (``cat a.gz b.gz``) are read in turn;
    zero padding after the last member (tape and some rotation tools) is ignored, as gzip does.
    """

    def __init__(self, source: _Stream, kind: str) -> None:
        self.source = source
        self.kind = kind
        self.new = DECOMPRESSORS[kind]
        self.d = self.new()
        self.started = False  # the current member has received input
        self.pending = bytearray()
        self.failure: str | None = None
        self.done = False

    def _errors(self) -> tuple[type[BaseException], ...]:
        import zstandard

        return (EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError)

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            if self.d.eof:
                if not data.strip(b"\0"):
                    return b"".join(out)  # padding after the last member
                self.d, self.started = self.new(), False
            self.started = True
            try:
                out.append(self.d.decompress(data))
            except self._errors() as e:
                self.failure = f"corrupt data ({type(e).__name__}: {e})"
                break
            data = self.d.unused_data if self.d.eof else b""
        return b"".join(out)

    def _fill(self, n: int) -> None:
        while len(self.pending) < n and not self.done and self.failure is None:
            block = self.source.read(COMPRESSED_READ)
            if not block:
                self.done = True
                if self.started and not self.d.eof:
                    self.failure = "the compressed stream ends before its end marker"
                break
            for at in range(0, len(block), COMPRESSED_PIECE):
                self.pending += self._feed(block[at : at + COMPRESSED_PIECE])  # bytearray: amortised
                if self.failure is not None:
                    break

    def read(self, n: int = -1) -> bytes:
        self._fill(n if n is not None and n >= 0 else 1 << 62)
        if not self.pending and self.failure is not None:
            failure, self.failure = self.failure, None
            self.done = True
            raise TruncatedArchive(failure)
        if n is None or n < 0 or n >= len(self.pending):
            out, self.pending = bytes(self.pending), bytearray()
        else:
            out = bytes(self.pending[:n])
            del self.pending[:n]
        return out

    def close(self) -> None:
        self.source.close()

    @property
    def closed(self) -> bool:
        return self.source.closed


def _frame(source: str, first: int, buf: bytes) -> pl.DataFrame:
    """Numbered lines of ``buf`` (which ends with a newline); invalid UTF-8 replaced and flagged."""
    bad = False
    try:
        lines = pl.read_lines(io.BytesIO(buf), name=C.RAW).get_column(C.RAW)
    except pl.exceptions.ComputeError:
        lines = pl.Series(C.RAW, buf.decode("utf-8", errors="replace")[:-1].split("\n")).str.strip_suffix(
            "\r"
        )
        bad = True
    n = len(lines)
    return pl.DataFrame(
        {
            C.SOURCE_FILE: pl.repeat(source, n, dtype=pl.String, eager=True),
            C.LINE_NUMBER: pl.int_range(first, first + n, dtype=pl.Int64, eager=True),
            C.RAW: lines,
            "invalid_utf8": lines.str.contains("\ufffd", literal=True)
            if bad
            else pl.repeat(False, n, dtype=pl.Boolean, eager=True),
        }
    )


def read_lines(inp: InputFile, chunk_bytes: int, max_line_bytes: int, log: ReadLog) -> Iterator[pl.DataFrame]:
    """Batches of numbered lines of one text input (see module doc); fills ``log`` as it goes."""
    hashed, stream = _open(inp, log)
    source = inp.path
    line = 1
    carry = b""
    skipping = False  # inside an over-long line that spans reads
    chunk_bytes = max(1024, chunk_bytes)
    try:
        while True:
            try:
                block = stream.read(chunk_bytes)
            except TruncatedArchive as e:
                _truncated(log, source, line, b"" if skipping else carry, str(e))
                carry, skipping = b"", False
                block = b""
            if not block:
                break
            if skipping:
                nl = block.find(b"\n")
                if nl < 0:
                    continue
                block = block[nl + 1 :]
                skipping = False
                line += 1
            buf = carry + block if carry else block
            cut = buf.rfind(b"\n")
            if cut < 0:
                if len(buf) > max_line_bytes:
                    log.quarantine.append(_too_long(source, line, buf))
                    carry = b""
                    skipping = True
                else:
                    carry = buf
                continue
            carry = buf[cut + 1 :]
            if len(carry) > max_line_bytes:
                # the tail is already too long: quarantine it now and skip the rest of it
                frame = _frame(source, line, buf[: cut + 1])
                line += len(frame)
                yield frame
                log.quarantine.append(_too_long(source, line, carry))
                carry = b""
                skipping = True
                continue
            frame = _frame(source, line, buf[: cut + 1])
            line += len(frame)
            yield frame
        if carry and not skipping:
            frame = _frame(source, line, carry + b"\n")
            line += len(frame)
            yield frame
        elif skipping:
            line += 1
    finally:
        if stream is not hashed:
            stream.close()
        if inp.path != STDIN:
            hashed.close()
        log.sha256 = hashed.h.hexdigest()
        log.lines = line - 1


def _truncated(log: ReadLog, source: str, line: int, partial: bytes, why: str) -> None:
    """Record where a compressed input breaks off: the cut last line (if any) is quarantined, not parsed."""
    log.quarantine.append(
        {
            C.SOURCE_FILE: source,
            C.LINE_NUMBER: line,
            "reason": "truncated_archive",
            C.RAW: partial[:RAW_CUT].decode("utf-8", errors="replace"),
        }
    )
    cut = f"; the cut line {line} is quarantined" if partial else ""
    log.warnings.append(
        f"{source}: truncated archive at line {line} ({why}): kept the {line - 1:,} line(s) before it{cut}"
    )


def _too_long(source: str, line: int, buf: bytes) -> dict:
    return {
        C.SOURCE_FILE: source,
        C.LINE_NUMBER: line,
        "reason": "too_long",
        C.RAW: buf[:RAW_CUT].decode("utf-8", errors="replace"),
    }


def read_table(inp: InputFile) -> pl.LazyFrame:
    """A tabular input of canonical events, checked against EVENT_SCHEMA (SchemaError names the column)."""
    path = inp.path
    suffix = _suffix(path)
    try:
        if suffix == ".parquet":
            lf = pl.scan_parquet(path)
        elif suffix == ".csv":
            lf = pl.scan_csv(path, schema_overrides=_text_overrides(path))
        else:
            lf = pl.scan_ndjson(path, schema_overrides=_text_overrides(path))
        have = lf.collect_schema()
    except (pl.exceptions.ComputeError, OSError) as e:
        raise InputError(f"cannot read table: {e}", path=path) from e
    if suffix == ".parquet":
        check(have, EVENT_SCHEMA, what="events table", path=path)
        return lf.select(EVENT_SCHEMA.names())
    for name in EVENT_SCHEMA.names():
        if name not in have:
            raise SchemaError(
                f"events table lacks column {name!r}", path=path, hint=did_you_mean(name, have.names())
            )
    lf = lf.with_columns(
        pl.col(C.TIMESTAMP).cast(pl.String).str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    )
    lf = conform(lf, EVENT_SCHEMA)
    try:
        lf.head(1000).collect()
    except pl.exceptions.PolarsError as e:
        raise SchemaError(f"events table has a value of the wrong type: {e}", path=path) from e
    return lf


def _text_overrides(path: str) -> dict[str, pl.DataType]:
    """Read text-like columns as strings (CSV/JSON type inference would turn '1234' into an int)."""
    return {
        name: pl.String for name, dtype in EVENT_SCHEMA.items() if dtype == pl.String or name == C.TIMESTAMP
    }
