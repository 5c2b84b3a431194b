"""Benchmark of the whole nightly job (`detector run`) on a large simulated night.

The night is ``bench/loggen.py``'s mixed Dovecot + Postfix syslog (logins, session ends, password
guessing, submissions, delivery noise), enriched with the GeoIP databases and practitioner
directory of a small ``detector simulate`` world. The job runs as a separate ``detector run``
process, as cron would run it; we report wall time, lines/s, CPU time, peak resident memory of
that process and the duration of each step (from its JSON log).

    python bench/nightly.py --lines 2000000        # or: make bench
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def bench_nightly(lines: int = 2_000_000, workdir: Path | None = None) -> dict[str, Any]:
    """Run `detector run` on a night of about ``lines`` lines; return the measured figures."""
    from loggen import generate

    from detector.simulate import simulate

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        world = root / "world"
        simulate(world, accounts=300, days=1, seed=11)
        logs = root / "logs"
        logs.mkdir()
        written = generate(logs / "mail.log", lines)
        size = (logs / "mail.log").stat().st_size
        detector = Path(sys.executable).with_name("detector")
        cmd = [
            str(detector), "run", str(logs), "--out", str(root / "out"),
            "--practitioners", str(world / "practitioners.csv"), "--geoip-dir", str(world / "geoip"),
            "--year", "2026", "--log-format", "json",
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"})
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode not in (0, 3):
            raise RuntimeError(f"detector run exited {proc.returncode}: {proc.stderr[-2000:]}")
        logs_json = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
        finished = next(x for x in reversed(logs_json) if x.get("msg") == "run finished")
        steps = {k: v for k, v in finished.items() if isinstance(v, float)}
        # the process's peak resident memory when each step ended (the step that raised it is the one to shrink)
        peaks = {x["step"]: x["peak_rss_mib"] for x in logs_json if "peak_rss_mib" in x}
        events = json.loads((root / "out" / "summary.json").read_text())["night"]["events"]
    return {
        "lines": written,
        "bytes": size,
        "events": events,
        "seconds": round(wall, 2),
        "lines_per_s": round(written / wall),
        "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        "peak_rss_mib": round(after.ru_maxrss / 1024),
        "steps": steps,
        "step_peak_rss_mib": peaks,
    }


WORKERS = (1, 2)
"""`detector run --workers N` runs of the bench: 1 pinned to one core (``taskset -c 0``), N on all."""


def rows(ctx: Any, measure: Any, row: Any, bin_dir: Path) -> list[Any]:
    """``bench/run.py`` entry: `detector run` on the run's generated log (``ctx.mail_log()``), with
    ``--workers 1`` on one core and ``--workers 2`` on every core; memory of the process tree."""
    from detector.simulate import simulate

    log = ctx.mail_log()
    world = ctx.work / "world"
    if not (world / "geoip").exists():
        simulate(world, accounts=300, days=1, seed=11)
    out = []
    walls: dict[int, float] = {}
    for workers in WORKERS:
        target = ctx.work / f"nightly-out-{workers}"
        pin = ["taskset", "-c", "0"] if workers == 1 and shutil.which("taskset") else []
        cmd = [
            *pin, str(bin_dir / "detector"), "run", str(log), "--out", str(target),
            "--practitioners", str(world / "practitioners.csv"), "--geoip-dir", str(world / "geoip"),
            "--year", "2026", "--log-format", "json", "--workers", str(workers),
        ]  # fmt: skip
        wall, cpu, mib, done = measure(cmd)
        walls[workers] = wall
        logs = [json.loads(x) for x in (done.stderr if done else "").splitlines() if x.startswith("{")]
        finished = next((x for x in reversed(logs) if x.get("msg") == "run finished"), {})
        slow = sorted(((k, v) for k, v in finished.items() if isinstance(v, float)), key=lambda kv: -kv[1])[
            :3
        ]
        events = json.loads((target / "summary.json").read_text())["night"]["events"]
        note = f"{events:,} events; slowest: " + ", ".join(f"{k} {v:.0f}s" for k, v in slow)
        note += "; " + cpu_split(logs, workers)
        if workers > 1 and walls.get(1):
            note += f"; {wall / walls[1]:.2f}x the wall time of --workers 1 on one core"
        cores = "1 core" if pin else f"{os.cpu_count()} cores"
        out.append(
            row("nightly", f"detector run --workers {workers} ({cores})", ctx.lines, wall, cpu, mib, note)
        )
    return out


def cpu_split(logs: list[dict[str, Any]], workers: int) -> str:
    """Where the run's CPU went, from its steps' log lines (``cpu_s``, ``workers_cpu_s``,
    ``shard_tasks_cpu_s``): with one worker, the serial part (CPU of the job's process outside the
    per-shard tasks) and Amdahl's ceiling for 2 cores; with more, the job's process against its workers."""
    steps = [x for x in logs if "cpu_s" in x]
    main = sum(x["cpu_s"] for x in steps)
    children = sum(x["workers_cpu_s"] for x in steps)
    tasks = sum(x["shard_tasks_cpu_s"] for x in steps)
    if workers == 1:
        serial = main - tasks
        share = serial / main if main else 1.0
        return (
            f"serial {serial:.1f} of {main:.1f} CPU s ({share:.0%}; per-shard tasks {tasks:.1f} s): "
            f"at best {share + (1 - share) / 2:.2f}x the time on 2 cores"
        )
    return f"job's process {main:.1f} CPU s, workers {children:.1f} CPU s (per-shard tasks {tasks:.1f} s)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark the whole nightly job.")
    ap.add_argument("--lines", type=int, default=2_000_000, help="log lines in the night")
    args = ap.parse_args(argv)
    r = bench_nightly(args.lines)
    print(
        f"nightly job: {r['lines']:,} lines ({r['bytes'] / 2**20:,.0f} MiB, {r['events']:,} events) in "
        f"{r['seconds']:.1f} s = {r['lines_per_s']:,} lines/s; CPU {r['cpu_seconds']:.1f} s; "
        f"peak RSS {r['peak_rss_mib']:,} MiB"
    )
    print("  steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["steps"].items()))
    print(
        "  peak RSS after each step: "
        + ", ".join(f"{k} {v:,} MiB" for k, v in r["step_peak_rss_mib"].items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
