"""Benchmarks (``make bench``): lines/s and peak memory, each in a child process. Not a test.

    .venv/bin/python bench/run.py                 # 2 million lines of each profile
    .venv/bin/python bench/run.py --lines 10000000
    .venv/bin/python bench/run.py --only ingest --profile imap

Every benchmark runs on each log profile of ``bench/loggen.py`` (``mta``: mixed Dovecot + Postfix
with delivery noise; ``imap``: a Dovecot IMAP/POP3 front end), and the table shows them side by side.

Each benchmark is a function ``(ctx) -> list[Row]`` in :data:`BENCHES`; add one (e.g. the nightly
job end to end) by writing such a function and appending it. Timings are wall clock and CPU of
the child process and its workers; peak memory is that of the whole process tree: the largest sum
of PSS over the child and its descendants (sampled every 0.1 s, shared pages counted once), or
the child's maximum resident set size (``wait4``) where that is larger (a short peak between samples).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(HERE))

from loggen import PROFILES  # noqa: E402

PROFILES_DEFAULT = "mta"
"""The profile a log given with ``--log`` is labelled with unless ``--profile`` says otherwise."""


class BenchFailed(RuntimeError):
    """A benchmarked command failed; the other benchmarks still run."""


@dataclass(frozen=True)
class Row:
    bench: str
    what: str
    lines: int
    wall_s: float
    cpu_s: float
    peak_mib: float
    note: str = ""
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.lines / self.wall_s if self.wall_s else 0.0


@dataclass
class Context:
    work: Path
    lines: int
    log: Path | None = None
    profile: str = "mta"

    def mail_log(self) -> Path:
        """The generated log of this context's profile (made once per run)."""
        if self.log is None:
            from loggen import generate

            self.log = self.work / f"mail-{self.profile}.log"
            t = time.perf_counter()
            n = generate(self.log, self.lines, profile=self.profile)
            print(
                f"generated {n:,} lines of the {self.profile} profile "
                f"({self.log.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - t:.0f}s"
            )
            self.lines = n
        return self.log


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    except OSError:
        return 0


def tree_pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` and all its descendants (shared pages counted once), MiB."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return sum(_pss_kib(p) for p in seen) / 1024


def measure(cmd: list[str]) -> tuple[float, float, float, subprocess.CompletedProcess | None]:
    """Run ``cmd``; (wall seconds, CPU seconds, peak memory MiB) of the child and its descendants.

    Peak memory is the largest sum of PSS over the process tree, sampled every 0.1 s (worker
    processes count in full, shared pages once), or the child's own peak RSS if larger.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        peak = [0.0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                peak[0] = max(peak[0], tree_pss_mib(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise BenchFailed(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    done = subprocess.CompletedProcess(cmd, 0, stdout, stderr)
    return wall, usage.ru_utime + usage.ru_stime, max(peak[0], usage.ru_maxrss / 1024), done


def bench_ingest(ctx: Context) -> list[Row]:
    """`detector ingest` with 1 and 2 worker processes (with its compiled kernel), then 1 without the
    kernel, against the per-line Python `re` reference, on the same log."""
    log = ctx.mail_log()

    def ingest(out: str, *options: str):
        return measure([str(BIN / "detector"), "ingest", str(log), "--out", str(ctx.work / out), *options])

    rows = []
    for workers in (1, 2):
        wall, cpu, mib, done = ingest("events.parquet", "--workers", str(workers))
        events = (
            next((ln.split()[1] for ln in done.stdout.splitlines() if ln.startswith("events")), "?")
            if done
            else "?"
        )
        what = "detector ingest" if workers == 1 else f"detector ingest --workers {workers}"
        rows.append(Row("ingest", what, ctx.lines, wall, cpu, mib, f"{events} events"))
    off = ctx.work / "kernel-off.toml"
    off.write_text('[ingest]\nkernel = "off"\n')
    wall, cpu, mib, _ = ingest("events-off.parquet", "--config", str(off), "--workers", "1")
    rows.append(
        Row("ingest", "detector ingest, kernel off", ctx.lines, wall, cpu, mib, "polars parsers only")
    )
    wall, cpu, mib, _ = measure(
        [
            str(BIN / "python"),
            str(HERE / "reference_parser.py"),
            str(log),
            str(ctx.work / "reference.parquet"),
        ]
    )
    rows.append(Row("ingest", REFERENCE, ctx.lines, wall, cpu, mib))
    return rows


REFERENCE = "per-line Python re reference"


def bench_nightly(ctx: Context) -> list[Row]:
    """The whole nightly job, `detector run`, on the same log (see bench/nightly.py)."""
    import nightly

    return nightly.rows(ctx, measure, Row, BIN)


def bench_spark(ctx: Context) -> list[Row]:
    """`detector run --engine spark` in local mode beside the local engine (IMAP profile; see
    bench/spark_bench.py): wall time, peak memory of the process tree, the overhead ratio."""
    import spark_bench

    return spark_bench.rows(ctx, Row)


BENCHES: list[tuple[str, Callable[[Context], list[Row]]]] = [
    ("ingest", bench_ingest),
    ("nightly", bench_nightly),
    ("spark", bench_spark),
]
"""Name and function of every benchmark, in the order they run."""


def table(rows: list[Row]) -> str:
    head = (
        f"{'profile':<7} {'bench':<8} {'what':<36} {'lines':>12} {'wall s':>8} {'cpu s':>8} "
        f"{'lines/s':>12} {'cpu us/line':>11} {'peak MiB':>9}  note"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        per_line = r.cpu_s / r.lines * 1e6 if r.lines else 0.0
        out.append(
            f"{r.profile:<7} {r.bench:<8} {r.what:<36} {r.lines:>12,} {r.wall_s:>8.1f} {r.cpu_s:>8.1f} "
            f"{r.rate:>12,.0f} {per_line:>11.2f} {r.peak_mib:>9,.0f}  {r.note}"
        )
    by: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        by.setdefault((r.profile, r.bench), {})[r.what] = r
    for (profile, name), group in by.items():
        ref = group.get(REFERENCE)
        ours = group.get("detector ingest")
        if ref and ours and ours.wall_s and ours.cpu_s:
            out.append(
                f"{profile} {name}: {ref.wall_s / ours.wall_s:.1f}x the reference's speed (wall clock), "
                f"{ref.cpu_s / ours.cpu_s:.1f}x (CPU)"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2_000_000, help="lines of generated log (default 2,000,000)")
    ap.add_argument(
        "--only", action="append", choices=[n for n, _ in BENCHES], help="run only these benchmarks"
    )
    ap.add_argument(
        "--profile",
        action="append",
        choices=list(PROFILES),
        help="log profiles to run (default: all, side by side)",
    )
    ap.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    ap.add_argument("--log", type=Path, help="use this existing log instead of generating one")
    a = ap.parse_args(argv)
    profiles = a.profile or ([PROFILES_DEFAULT] if a.log else list(PROFILES))
    with tempfile.TemporaryDirectory(prefix="detector-bench-") as tmp:
        root = a.keep or Path(tmp)
        rows: list[Row] = []
        failed = 0
        for profile in profiles:
            work = root / profile
            work.mkdir(parents=True, exist_ok=True)
            ctx = Context(work, a.lines, profile=profile)
            if a.log:
                ctx.log = a.log
                with open(a.log, "rb") as f:
                    ctx.lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))
            for name, fn in BENCHES:
                if a.only and name not in a.only:
                    continue
                try:
                    got = [replace(r, profile=profile) for r in fn(ctx)]
                except BenchFailed as e:
                    failed += 1
                    print(f"{profile} {name}: FAILED: {e}", file=sys.stderr)
                    continue
                rows += got
                print(table(got), flush=True)
        print(f"cpus: {os.cpu_count()}, load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
