"""The Spark engine in local mode beside the local engine: ``detector run`` on the same IMAP night.

Both runs are whole ``detector run`` processes on the ``imap`` profile of ``bench/loggen.py`` with
the GeoIP databases and practitioner directory of a small simulated world; the Spark run is
``--engine spark --spark-master local[2]`` (its JVM and Python workers are children of the run).
Wall time and peak memory are of the whole process tree (PSS summed over every descendant,
``/work/shared/tools/treemem.py`` when present, else the run's own peak RSS); the overhead is the
ratio of the Spark run's wall time to the local run's. Called by ``bench/run.py`` (``make bench``)
or alone:

    .venv/bin/python bench/spark_bench.py --lines 200000
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TREEMEM = Path("/work/shared/tools/treemem.py")
MASTER = "local[2]"


def _steps(stderr: str) -> dict[str, float]:
    """The seconds of each step of a ``detector run --log-format json`` (its ``run finished`` line)."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("{") and '"run finished"' in line:
            return {k: v for k, v in json.loads(line).items() if isinstance(v, float)}
    return {}


def _tree(cmd: list[str]) -> tuple[float, float | None, dict[str, float]]:
    """(wall seconds, peak MiB of the process tree or None, seconds per step) of ``cmd``."""
    env = {**os.environ, "COLUMNS": "100"}
    if TREEMEM.exists():
        with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
            # treemem discards the command's output: the run's JSON log goes to a file
            shell = ["sh", "-c", f"exec {shlex.join(cmd)} 2>{shlex.quote(log.name)}"]
            done = subprocess.run(
                [sys.executable, str(TREEMEM), *shell], capture_output=True, text=True, env=env
            )
            stderr = log.read()
        line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), None)
        figures = json.loads(line) if line else {}
        if figures.get("rc") not in (0, 3):
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
        return float(figures["wall_s"]), float(figures["peak_mib"]), _steps(stderr)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, None, _steps(done.stderr)


def compare(log: Path, work: Path, lines: int) -> dict[str, Any]:
    """``detector run`` on ``log`` with each engine; their figures and the overhead ratio."""
    from detector.simulate import simulate

    world = work / "world"
    if not (world / "geoip").exists():
        simulate(world, accounts=300, days=1, seed=11)
    detector = Path(sys.executable).with_name("detector")
    figures: dict[str, Any] = {"lines": lines, "master": MASTER}
    for engine in ("local", "spark"):
        cmd = [
            str(detector), "run", str(log), "--out", str(work / f"out-{engine}"),
            "--practitioners", str(world / "practitioners.csv"), "--geoip-dir", str(world / "geoip"),
            "--year", "2026", "--log-format", "json", "--engine", engine,
        ]  # fmt: skip
        if engine == "spark":
            cmd += ["--spark-master", MASTER]
        wall, peak, steps = _tree(cmd)
        figures[engine] = {
            "wall_s": round(wall, 1),
            "peak_tree_mib": None if peak is None else round(peak),
            "steps_s": steps,
        }
    figures["overhead"] = round(figures["spark"]["wall_s"] / figures["local"]["wall_s"], 2)
    figures["load"] = [round(x, 1) for x in os.getloadavg()]
    return figures


def rows(ctx: Any, row: Any) -> list[Any]:
    """``bench/run.py``'s rows: the IMAP profile only (the issue's comparison)."""
    if ctx.profile != "imap":
        return []
    got = compare(ctx.mail_log(), ctx.work, ctx.lines)
    out = []
    for engine in ("local", "spark"):
        f = got[engine]
        note = f"tree peak {f['peak_tree_mib']} MiB" if f["peak_tree_mib"] is not None else ""
        if engine == "spark":
            note += f"; {MASTER}; overhead {got['overhead']:.2f}x the local engine's wall time"
        out.append(row("spark", f"detector run --engine {engine}", ctx.lines, f["wall_s"], 0.0, 0.0, note))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from loggen import generate

    with tempfile.TemporaryDirectory(prefix="detector-spark-bench-") as tmp:
        work = Path(tmp)
        log = work / "mail-imap.log"
        n = generate(log, a.lines, profile="imap")
        print(json.dumps(compare(log, work, n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
