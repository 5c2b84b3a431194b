"""The floor of the nightly job after ingestion: what its unavoidable parts cost on this stack.

Builds a bench night (``bench/loggen.py``, the world of ``bench/nightly.py``), ingests, enriches
and detects it once, then times the cheapest form of each thing the later steps must do at least
once (CPU seconds of this process, best of ``--repeat``): start-up imports, loading the model,
writing and reading the events, the polars primitives the features are made of, the event
model's prediction over the night's distinct tree paths, and writing events.parquet. The figures
are in docs/operations.md (Performance, The floor after ingestion).

    python bench/nightly_floor.py --lines 2000000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(CPU s, wall s) of the fastest of ``repeat`` calls."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.process_time() - c, time.perf_counter() - w))
    return best


def _import_cost(module: str, repeat: int) -> tuple[float, float]:
    """(CPU s, wall s) of a fresh interpreter importing ``module`` (minus a bare interpreter)."""

    def run(code: str) -> tuple[float, float]:
        best = (float("inf"), float("inf"))
        for _ in range(repeat):
            w = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", f"{code}\nimport os; t = os.times(); print(t.user + t.system)"],
                capture_output=True,
                text=True,
                check=True,
            )
            best = min(best, (float(out.stdout.split()[-1]), time.perf_counter() - w))
        return best

    bare = run("pass")
    cost = run(f"import {module}")
    return cost[0] - bare[0], cost[1] - bare[1]


def measure(lines: int, repeat: int, workdir: Path | None = None) -> list[tuple[str, str, float, float]]:
    """``(step, what, CPU s, wall s)`` rows."""
    import numpy as np
    import polars as pl
    from loggen import generate

    from detector.config import Config
    from detector.detect.shards import detect_sharded
    from detector.enrich import enrich, find_databases, load_practitioners
    from detector.features import History
    from detector.ingest import ingest
    from detector.pipeline import default_model_path
    from detector.schema import C
    from detector.score import aggregates as agg
    from detector.score import load_model
    from detector.simulate import simulate

    rows: list[tuple[str, str, float, float]] = []

    def add(step: str, what: str, cost: tuple[float, float]) -> None:
        rows.append((step, what, round(cost[0], 3), round(cost[1], 3)))
        print(f"{step:8s} {what:64s} CPU {cost[0]:6.2f} s  wall {cost[1]:6.2f} s", flush=True)

    for module in ("polars", "sklearn.ensemble", "skops.io", "detector.score"):
        add("start", f"import {module} (fresh process)", _import_cost(module, repeat))
    model_file = default_model_path()
    add(
        "start",
        "load_model (checksum, trusted types, skops load)",
        _best(lambda: load_model(model_file), repeat),
    )
    model = load_model(model_file)

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        simulate(root / "world", accounts=300, days=1, seed=11)
        generate(root / "mail.log", lines)
        cfg = Config().replace(ingest={"year": 2026})
        ingested = ingest([str(root / "mail.log")], cfg.ingest, root / "ingest")
        enriched = enrich(
            ingested.events,
            geoip=find_databases(str(root / "world" / "geoip")),
            practitioners=load_practitioners(root / "world" / "practitioners.csv"),
            history_shared=None,
            cfg=cfg.enrich,
        ).events.collect()
        n = enriched.height
        print(f"{n:,} events", flush=True)
        detection = detect_sharded(enriched.lazy(), cfg, History.empty(), root / "shards")
        det = pl.scan_parquet(list(detection.shards)).collect()
        path = root / "x.parquet"

        add("detect", f"write the enriched events once ({enriched.width} columns, lz4)",
            _best(lambda: enriched.write_parquet(path, compression="lz4"), repeat))  # fmt: skip
        add("detect", "read them back", _best(lambda: pl.read_parquet(path), repeat))
        add("detect", f"write the detected events once ({det.width} columns, lz4)",
            _best(lambda: det.write_parquet(path, compression="lz4", row_group_size=8192), repeat))  # fmt: skip
        keys = enriched.select(C.ACCOUNT, C.SOURCE_IP, C.PREFIX, C.TIMESTAMP, C.OUTCOME)
        add("detect", "sort the key columns by account, time",
            _best(lambda: keys.sort(C.ACCOUNT, C.TIMESTAMP), repeat))  # fmt: skip
        ok = (pl.col(C.OUTCOME) == "success").cast(pl.Int64)
        add("detect", "one cum_sum over (account)",
            _best(lambda: keys.select(ok.cum_sum().over(C.ACCOUNT)), repeat))  # fmt: skip
        add("detect", "one cum_sum over (account, address)",
            _best(lambda: keys.select(ok.cum_sum().over(C.ACCOUNT, C.SOURCE_IP)), repeat))  # fmt: skip

        def grouped_join() -> None:
            stats = keys.group_by(C.ACCOUNT, C.SOURCE_IP).agg(pl.len().alias("n"), ok.sum().alias("s"))
            keys.select(C.ACCOUNT, C.SOURCE_IP).join(
                stats, on=[C.ACCOUNT, C.SOURCE_IP], how="left", maintain_order="left"
            )

        add("detect", "one group_by (account, address) joined back in order", _best(grouped_join, repeat))
        add("detect", "one left join on a string key (prefix -> count)",
            _best(lambda: keys.select(C.PREFIX).join(keys.group_by(C.PREFIX).len(), on=C.PREFIX,
                                                     how="left", maintain_order="left"), repeat))  # fmt: skip

        X = agg.event_matrix(det, model.event_features)
        thresholds = model.event.thresholds()
        assert thresholds is not None
        codes, _ = model.event.paths(X, thresholds)
        print(f"{codes.height:,} distinct tree paths", flush=True)
        add("score", "event matrix (64 float features)",
            _best(lambda: agg.event_matrix(det, model.event_features), repeat))  # fmt: skip
        add("score", "distinct tree paths of every event",
            _best(lambda: model.event.paths(X, thresholds), repeat))  # fmt: skip
        for threads in (1, 2):
            add("score", f"predict the distinct paths ({threads} thread{'s' if threads > 1 else ''})",
                _best(lambda t=threads: model.event.predict_paths(codes, thresholds, threads=t), repeat))  # fmt: skip
        add("score", "predict every event, no dedup (2 threads)",
            _best(lambda: model.event.estimator_.predict_proba(X), 1))  # fmt: skip

        from detector.report import contract

        names = [c.name for c in contract.BY_NAME["events.parquet"].columns() if c.name in det.columns]
        events = det.select(names).with_columns(pl.lit(np.float64(0.0)).alias(C.RISK_SCORE))
        add("events", f"write events.parquet once ({events.width} columns, zstd)",
            _best(lambda: events.write_parquet(path, compression="zstd"), repeat))  # fmt: skip
        add("events", "sort the events by event_id (the merge's work)",
            _best(lambda: det.select(names).sample(fraction=1.0, shuffle=True, seed=1).sort(C.EVENT_ID), 1))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The floor of the nightly job after ingestion.")
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    measure(args.lines, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
