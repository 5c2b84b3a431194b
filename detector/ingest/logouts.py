"""Dovecot logouts take the address of their login, within a memory budget.

Dovecot's default log prefix gives a logout (``imap(u)<pid><session>: Disconnected: Logged out``)
the session id but no client address. A logout takes address, local address and TLS from the last
successful login of the same host and session id logged at most :data:`SESSION_MEMORY` before it
(at the same second included). The rule does not depend on how the input is cut into batches,
files or workers.

Nothing waits in memory for a partner: while events are written, the narrow key columns of the
logins and of the logouts without an address go to two spill files beside the output, with each
row's position in the events file. At the end the two are paired per partition of a hash of
(host, session id), as many partitions as ``[ingest] pairing_memory_bytes`` asks for, and the
fills are applied by one streaming rewrite of the events file, range of positions by range of
positions. Memory is set by the budget, not by the night.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from detector.schema import UTC_US, Action, C, Outcome

SESSION_MEMORY = timedelta(hours=12)
"""Longest time between a Dovecot login and the logout that takes its address."""
MAX_PARTITIONS = 256
"""Partitions (passes over the spill files) at most, whatever the budget."""
WORKING_FACTOR = 4
"""Memory of pairing one partition, per uncompressed byte of its spilled rows (sort, join, copies)."""

POS = "_pos"
KEY_SCHEMA = pl.Schema({"_h": pl.String, C.SESSION_ID: pl.String, C.TIMESTAMP: UTC_US, POS: pl.Int64})
LOGIN_SCHEMA = pl.Schema({**KEY_SCHEMA, C.SOURCE_IP: pl.String, C.LOCAL_IP: pl.String, C.TLS: pl.Boolean})
FILL_SCHEMA = pl.Schema({POS: pl.Int64, C.SOURCE_IP: pl.String, C.LOCAL_IP: pl.String, C.TLS: pl.Boolean})


SPILL_OPTIONS = {"compression": "lz4", "use_dictionary": False, "write_statistics": False}
"""The spill and fill files: read once, by position or hash, never filtered by value. Session ids,
addresses and positions hardly repeat, so dictionary pages and statistics were half of the
spill's CPU for nothing."""


def is_login() -> pl.Expr:
    """A successful Dovecot login with a session id: what a logout can take its address from."""
    return (
        (pl.col(C.ACTION) == Action.LOGIN)
        & (pl.col(C.OUTCOME) == Outcome.SUCCESS)
        & (pl.col(C.DAEMON) == "dovecot")
        & pl.col(C.SESSION_ID).is_not_null()
    )


def is_open_logout() -> pl.Expr:
    """A logout with a session id and no address: waits for its login."""
    return (
        (pl.col(C.ACTION) == Action.LOGOUT)
        & pl.col(C.SOURCE_IP).is_null()
        & pl.col(C.SESSION_ID).is_not_null()
    )


def _key() -> list[pl.Expr]:
    return [pl.col(C.HOST).fill_null("").alias("_h"), pl.col(C.SESSION_ID)]


class LogoutPairing:
    """Spills logins and open logouts as events are written; :meth:`apply` fills the logouts."""

    def __init__(self, work_dir: Path, memory_bytes: int) -> None:
        self.budget = max(1, memory_bytes)
        self.dir = Path(tempfile.mkdtemp(prefix=".pairing-", dir=work_dir))
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.logouts = 0

    def record(self, events: pl.DataFrame, offset: int) -> None:
        """Spill the logins and open logouts of ``events``, to be written at ``offset`` onwards."""
        sel = events.lazy().with_row_index(POS, offset=offset).with_columns(pl.col(POS).cast(pl.Int64))
        logins, logouts = pl.collect_all(
            [
                sel.filter(is_login()).select(*_key(), C.TIMESTAMP, POS, C.SOURCE_IP, C.LOCAL_IP, C.TLS),
                sel.filter(is_open_logout()).select(*_key(), C.TIMESTAMP, POS),
            ],
            engine="in-memory",
        )
        self._spill("logins", logins, LOGIN_SCHEMA)
        self._spill("logouts", logouts, KEY_SCHEMA)
        self.logouts += len(logouts)

    def _spill(self, name: str, rows: pl.DataFrame, schema: pl.Schema) -> None:
        if rows.is_empty():
            return
        table = rows.cast(dict(schema)).to_arrow()
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = pq.ParquetWriter(
                self.dir / f"{name}.parquet", table.schema, **SPILL_OPTIONS
            )
        writer.write_table(table)

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    def discard(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def partitions(self) -> int:
        """Partitions needed to pair within the budget (from the spilled rows' uncompressed size)."""
        size = 0
        for name in ("logins", "logouts"):
            path = self.dir / f"{name}.parquet"
            if path.exists():
                meta = pq.ParquetFile(path).metadata
                size += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        return max(1, min(MAX_PARTITIONS, math.ceil(WORKING_FACTOR * size / self.budget)))

    def apply(
        self,
        events_path: Path,
        arrow_schema: pa.Schema,
        writer_options: dict,
        *,
        out: Path | None = None,
        rows: int | None = None,
    ) -> int:
        """Fill the open logouts of ``events_path``; the number filled. The filled events go to
        ``out`` (Parquet with ``writer_options``), by default ``events_path`` itself. An Arrow IPC
        ``events_path`` (the staging file of ingestion, of ``rows`` events) is always rewritten to
        ``out``."""
        self.close()
        out = out or events_path
        try:
            if not self.logouts or not (self.dir / "logins.parquet").exists():
                filled, span = 0, 1 << 62  # nothing to fill: one range, never found
            else:
                n_parts = self.partitions()
                total = pq.ParquetFile(events_path).metadata.num_rows if rows is None else rows
                span = max(1, math.ceil(total / n_parts))
                filled = self._pair(n_parts, span)
            if filled or out != events_path:
                self._rewrite(events_path, out, span, arrow_schema, writer_options)
            return filled
        finally:
            self.discard()

    def _pair(self, n_parts: int, span: int) -> int:
        """Pair per hash partition; fills go to one file per range of ``span`` positions."""
        writers: dict[int, pq.ParquetWriter] = {}
        filled = 0
        if n_parts >= SPLIT_FROM:
            for name, schema in (("logins", LOGIN_SCHEMA), ("logouts", KEY_SCHEMA)):
                self._split(name, schema, n_parts)
        try:
            for p in range(n_parts):
                logins, logouts = (
                    self._partition(name, schema, p, n_parts)
                    for name, schema in (("logins", LOGIN_SCHEMA), ("logouts", KEY_SCHEMA))
                )
                logins = logins.sort(C.TIMESTAMP, POS).unique(
                    # of logins at one second, the last written
                    ["_h", C.SESSION_ID, C.TIMESTAMP],
                    keep="last",
                    maintain_order=True,
                )
                fills = (
                    logouts.lazy()
                    .sort(C.TIMESTAMP)
                    .join_asof(
                        logins.lazy().select(
                            "_h",
                            C.SESSION_ID,
                            C.TIMESTAMP,
                            pl.col(C.TIMESTAMP).alias("_login"),
                            C.SOURCE_IP,
                            C.LOCAL_IP,
                            C.TLS,
                        ),
                        on=C.TIMESTAMP,
                        by=["_h", C.SESSION_ID],
                        strategy="backward",
                        tolerance=SESSION_MEMORY,
                        check_sortedness=False,
                    )
                    .filter(pl.col("_login").is_not_null())
                    .select(FILL_SCHEMA.names())
                    .with_columns((pl.col(POS) // span).alias("_range"))
                    .collect()
                )
                del logins, logouts
                filled += len(fills)
                for (r,), rows in fills.partition_by("_range", as_dict=True, include_key=False).items():
                    table = rows.cast(dict(FILL_SCHEMA)).to_arrow()
                    if r not in writers:
                        writers[r] = pq.ParquetWriter(
                            self.dir / f"fill-{r}.parquet", table.schema, **SPILL_OPTIONS
                        )
                    writers[r].write_table(table)
        finally:
            for w in writers.values():
                w.close()
        return filled

    def _split(self, name: str, schema: pl.Schema, n_parts: int) -> None:
        """One pass over a spill file: its rows go to one file per partition of the hash of
        (host, session id), in their order. Each partition then reads only its own rows: reading
        the whole spill file once per partition grew with the night (partitions times spill).
        Rows wait in memory for at most half the budget before they are written."""
        path = self.dir / f"{name}.parquet"
        if not path.exists():
            return
        part = _part(n_parts).alias("_p")
        waiting: dict[int, list[pl.DataFrame]] = {}
        size = 0
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}

        def flush() -> None:
            for p, frames in waiting.items():
                table = pl.concat(frames).cast(dict(schema)).to_arrow()
                if p not in writers:
                    writers[p] = pa.ipc.new_file(self.dir / f"{name}-{p}.arrow", table.schema)
                writers[p].write_table(table)
            waiting.clear()

        file = pq.ParquetFile(path)
        try:
            for i in range(file.metadata.num_row_groups):
                rows = pl.from_arrow(file.read_row_group(i))
                assert isinstance(rows, pl.DataFrame)
                for (p,), part_rows in (
                    rows.with_columns(part).partition_by("_p", as_dict=True, include_key=False).items()
                ):
                    waiting.setdefault(p, []).append(part_rows)
                size += rows.estimated_size()
                if size > self.budget // 2:
                    flush()
                    size = 0
            flush()
        finally:
            file.close()
            for w in writers.values():
                w.close()
        path.unlink()

    def _partition(self, name: str, schema: pl.Schema, p: int, n_parts: int) -> pl.DataFrame:
        """The spilled rows of partition ``p``: its own file once :meth:`_split` made them, else
        the spill file's rows of that partition."""
        if n_parts >= SPLIT_FROM:
            path = self.dir / f"{name}-{p}.arrow"
            return pl.read_ipc(path) if path.exists() else pl.DataFrame(schema=schema)
        path = self.dir / f"{name}.parquet"
        if not path.exists():
            return pl.DataFrame(schema=schema)
        # the streaming engine reads the spill file a row group at a time and keeps only this
        # partition's rows (the in-memory one would read the whole file first)
        return pl.scan_parquet(path).filter(_part(n_parts) == p).collect(engine="streaming")

    def _rewrite(
        self, events_path: Path, out_path: Path, span: int, arrow_schema: pa.Schema, options: dict
    ) -> None:
        """Rewrite the events row group by row group into ``out_path``, filling logouts from the
        range files. A row group stays an Arrow table: only the three filled columns go through
        polars."""
        tmp = out_path.with_name(f".{out_path.name}.filled")
        loaded = -1
        fills = pl.DataFrame(schema=FILL_SCHEMA)
        offset = 0
        with pq.ParquetWriter(tmp, arrow_schema, **options) as out:
            for group in _groups(events_path):
                end = offset + len(group)
                while loaded < (end - 1) // span:
                    loaded += 1
                    path = self.dir / f"fill-{loaded}.parquet"
                    if path.exists():
                        fills = pl.concat([fills, pl.read_parquet(path)], how="vertical")
                if len(fills):
                    fills = fills.filter(pl.col(POS) >= offset)
                    here = fills.filter(pl.col(POS) < end)
                    if not here.is_empty():
                        group = _filled(group, here, offset)
                out.write_table(group if group.schema == arrow_schema else group.cast(arrow_schema))
                offset = end
        os.replace(tmp, out_path)


SPLIT_FROM = 8
"""From this many partitions on, the spill files are first split into one file per partition (one
pass); with fewer, each partition reads the spill files and keeps its rows. Measured on the 2M-line
IMAP bench log's spill (650,000 logins and as many logouts): reading per partition cost 0.62 s at 2
partitions and 1.9 s at 32, splitting first 0.83 s and 1.15 s."""


def _part(n_parts: int) -> pl.Expr:
    """The partition of a spilled row: a hash of (host, session id)."""
    return pl.struct("_h", C.SESSION_ID).hash(seed=7) % n_parts


STAGED = ".arrow"
"""Suffix of an events file staged as Arrow IPC (ingestion writes one, :meth:`LogoutPairing.apply`
turns it into Parquet)."""


def _groups(path: Path) -> Iterator[pa.Table]:
    """The row groups of a Parquet events file, or the record batches of a staged IPC one."""
    if path.suffix == STAGED:
        with pa.OSFile(str(path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield pa.Table.from_batches([reader.get_batch(i)])
        return
    file = pq.ParquetFile(path)
    try:
        for i in range(file.metadata.num_row_groups):
            yield file.read_row_group(i)
    finally:
        file.close()


FILLED = (C.SOURCE_IP, C.LOCAL_IP, C.TLS)


def _filled(group: pa.Table, fills: pl.DataFrame, offset: int) -> pa.Table:
    """Scatter the fills (positions from ``offset``) into copies of the three columns."""
    idx = (fills[POS] - offset).cast(pl.UInt32)
    cols = pl.from_arrow(group.select(list(FILLED)))
    assert isinstance(cols, pl.DataFrame)
    for c in FILLED:
        col = cols[c].clone()
        col.scatter(idx, fills[c].cast(cols.schema[c]))
        position = group.schema.get_field_index(c)
        kind = group.schema.field(position).type
        group = group.set_column(position, c, col.to_arrow().cast(kind))
    return group


def fill_file(events_path: Path, memory_bytes: int, writer_options: dict) -> int:
    """Fill the open logouts of an events file written without pairing (ingestion split across
    processes or machines, as ``--engine spark`` splits it per file); the number filled."""
    pairing = LogoutPairing(events_path.parent, memory_bytes)
    file = pq.ParquetFile(events_path)
    offset = 0
    for batch in file.iter_batches(batch_size=256 * 1024):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        pairing.record(frame, offset)
        offset += frame.height
    return pairing.apply(events_path, file.schema_arrow, writer_options)
