"""Where ``detector ingest``'s CPU goes, phase by phase (issue 18). Not a test.

    .venv/bin/python bench/ingest_phases.py LOG [--kernel on|off|auto]

Runs :func:`detector.ingest.ingest` on ``LOG`` with the batches parsed and settled one after the
other in this thread (no overlap) and one polars thread, and charges the process's CPU time
(user + system) to the innermost phase running: reading (with the SHA-256), loading numba and
the compiled code, the compiled scan, the kernel's column building, the polars parsers (envelope
and parsers on the lines the kernel leaves), correlation, the settling around it (carry, masks,
noise counts), sorting each batch, Arrow conversion and writing the events as they come,
spilling logins and logouts for the pairing, the pairing at the end and its rewrite (which
writes the Parquet file). The total is the whole run's CPU; ``other`` is what no phase claims
(start-up of the run, the final sort of an input out of time order).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from concurrent.futures import Future
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")


class _Inline:
    """An executor that runs each job at once in the calling thread (no overlap to account for)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def submit(self, fn, *args, **kwargs) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the caller, as a real executor does
            f.set_exception(e)
        return f

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class Phases:
    """Exclusive CPU time per phase: a nested phase's time is not charged to its caller."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.mark = time.process_time()

    def _switch(self) -> None:
        now = time.process_time()
        self.spent[self.stack[-1] if self.stack else "other"] += now - self.mark
        self.mark = now

    def wrap(self, name: str, fn, *, unless: str = ""):
        def timed(*args, **kwargs):
            if unless and unless in self.stack:
                return fn(*args, **kwargs)
            self._switch()
            self.stack.append(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self._switch()
                self.stack.pop()

        return timed

    def wrap_iter(self, name: str, gen_fn):
        def timed(*args, **kwargs):
            it = gen_fn(*args, **kwargs)
            while True:
                self._switch()
                self.stack.append(name)
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self._switch()
                    self.stack.pop()
                yield item

        return timed


def instrument(ph: Phases) -> None:
    import pyarrow.parquet as pq

    import detector.ingest as ing
    from detector.ingest import correlate, kernel, logouts

    ing.ThreadPoolExecutor = _Inline  # type: ignore[misc, assignment]
    ing.read_lines = ph.wrap_iter("read", ing.read_lines)
    ing.kernel.split = ph.wrap("kernel: columns", kernel.split)
    scan_fn = kernel._scan_fn
    kernel._scan_fn = lambda: ph.wrap("kernel: scan", ph.wrap("kernel: load numba", scan_fn)())
    ing._parse_batch = ph.wrap("polars parsers", ing._parse_batch)
    ing._settle = ph.wrap("settle (carry, masks)", ing._settle)
    ing._applied = ph.wrap("settle (carry, masks)", ing._applied)
    ing.corr.correlate = ph.wrap("correlate", correlate.correlate)
    logouts.LogoutPairing.record = ph.wrap("pairing: spill", logouts.LogoutPairing.record)
    logouts.LogoutPairing._pair = ph.wrap("pairing: pair", logouts.LogoutPairing._pair)
    logouts.LogoutPairing._rewrite = ph.wrap("pairing: rewrite", logouts.LogoutPairing._rewrite)
    import polars as pl
    import pyarrow as pa
    import pyarrow.ipc

    sort = pl.DataFrame.sort
    to_arrow = pl.DataFrame.to_arrow
    write_parquet = pq.ParquetWriter.write_table
    write_ipc = pa.ipc.RecordBatchFileWriter.write_table
    writer_cls = ing._EventWriter
    original_write = writer_cls.write

    def write(self, df, *, pair=False):
        # the events written as the batches come: Parquet (before session 7) or staged Arrow IPC
        pl.DataFrame.sort = ph.wrap("write: sort", sort)
        pl.DataFrame.to_arrow = ph.wrap("write: to arrow", to_arrow, unless="pairing: spill")
        pq.ParquetWriter.write_table = ph.wrap("write: events", write_parquet, unless="pairing: spill")
        pa.ipc.RecordBatchFileWriter.write_table = ph.wrap("write: events", write_ipc)
        try:
            return original_write(self, df, pair=pair)
        finally:
            pl.DataFrame.sort, pl.DataFrame.to_arrow = sort, to_arrow
            pq.ParquetWriter.write_table, pa.ipc.RecordBatchFileWriter.write_table = write_parquet, write_ipc

    writer_cls.write = write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--kernel", default="on", choices=("on", "off", "auto"))
    a = ap.parse_args()
    from detector.config import IngestConfig
    from detector.ingest import ingest

    ph = Phases()
    instrument(ph)
    cfg = IngestConfig(kernel=a.kernel)
    t0, w0 = time.process_time(), time.perf_counter()
    ph.mark = t0
    with tempfile.TemporaryDirectory() as tmp:
        result = ingest([str(a.log)], cfg, Path(tmp))
        ph._switch()
    total = time.process_time() - t0
    lines = result.lines_read
    print(f"{lines:,} lines, {result.event_count:,} events, kernel {a.kernel}, load {os.getloadavg()[0]:.1f}")
    print(f"{'phase':<24} {'CPU s':>7} {'us/line':>8}")
    for name, s in sorted(ph.spent.items(), key=lambda kv: -kv[1]):
        print(f"{name:<24} {s:7.2f} {1e6 * s / lines:8.3f}")
    print(f"{'total':<24} {total:7.2f} {1e6 * total / lines:8.3f}   (wall {time.perf_counter() - w0:.1f} s)")


if __name__ == "__main__":
    main()
