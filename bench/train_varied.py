"""Experiment: a login model trained across several drawn-mix worlds instead of one fixed-mix world.

Simulates N worlds with attack mixes drawn from development seeds (never the fresh worlds'), each
starting on another date so that no label of one world can match an event of another, detects
them, trains one model on their events together and writes it (not the shipped model):

    .venv/bin/python bench/train_varied.py --out /tmp/varied [--worlds 3] [--accounts 3000] [--days 3]
    .venv/bin/python bench/plan_quality.py --fresh 10 --model /tmp/varied.skops --record bench/fresh_worlds_varied.toml
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

DEV_SEEDS = (9001, 9002, 9003, 9004, 9005, 9006)
"""Development seeds of the training worlds (below 1,000,000: fresh seeds are drawn above 1,000)."""


def main(argv: list[str] | None = None) -> int:
    from detector.config import Config
    from detector.labels import read_labels
    from detector.score.train import Prepared, prepare, train_frames
    from detector.simulate import DEFAULT_START, simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="model to write (OUT.skops + OUT.card.json)")
    ap.add_argument("--worlds", type=int, default=3)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--max-iter", type=int, default=None)
    args = ap.parse_args(argv)
    cfg = Config()
    began = time.perf_counter()
    events, labels, seeds = [], [], []
    with tempfile.TemporaryDirectory(prefix="train-varied-") as tmp:
        for k, seed in enumerate(DEV_SEEDS[: args.worlds]):
            world = Path(tmp) / f"world-{seed}"
            start = DEFAULT_START - dt.timedelta(days=(args.days + 1) * (k + 1))
            simulate(world, accounts=args.accounts, days=args.days, seed=seed, start=start, mix="drawn")
            p = prepare(
                world / "logs", cfg=cfg, geoip_dir=world / "geoip", practitioners=world / "practitioners.csv"
            )
            events.append(p.events)
            labels.append(read_labels(world / "labels" / "incidents.csv"))
            seeds.append(seed)
            print(f"[{time.perf_counter() - began:.0f} s] world {seed}: {p.events.height} events", flush=True)
        frame = pl.concat(events, how="diagonal_relaxed")
        prepared = Prepared(detection=None, events=frame, source="drawn worlds")
        world_meta = {
            "generator": "detector simulate",
            "mix": "drawn",
            "seeds": seeds,
            "accounts": args.accounts,
        }
        trained = train_frames(
            prepared, pl.concat(labels), args.out, world=world_meta, max_iter=args.max_iter
        )
    print(trained.summary_text())
    print(f"{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
