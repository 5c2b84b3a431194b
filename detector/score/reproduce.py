"""Rebuild the shipped model: ``make model`` (``python -m detector.score.reproduce``).

Simulates a training world (seed 101) and a held-out world (seed 202) in a temporary directory,
trains on the first, evaluates on the second (the figures go into the card), and writes
``models/default.skops`` and ``models/default.card.json``. Neither world is the one in
``data/samples`` (seed 7).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from detector.config import Config

TRAIN_SEED = 101
EVAL_SEED = 202
ACCOUNTS = 20_000
DAYS = 3
OUT = Path(__file__).resolve().parents[2] / "models" / "default"


@dataclass(frozen=True)
class _Detected:
    """A detection read back from a cached events Parquet (scoring needs only the events)."""

    events: pl.LazyFrame


def reproduce(
    out: str | Path = OUT,
    *,
    accounts: int = ACCOUNTS,
    days: int = DAYS,
    train_seed: int = TRAIN_SEED,
    eval_seed: int = EVAL_SEED,
    max_iter: int | None = None,
    work: str | Path | None = None,
    log: bool = True,
) -> dict:
    """Simulate, train, evaluate; returns the held-out metrics.

    ``work``: keep the worlds and their detections there and reuse them on the next call
    (otherwise everything lives in a temporary directory).
    """
    from detector.labels import read_labels
    from detector.score.evaluate import evaluate_prepared, format_metrics
    from detector.score.train import Prepared, prepare, train_frames
    from detector.simulate import simulate

    cfg = Config()

    def say(msg: str) -> None:
        if log:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="detector-model-") as tmp:
        root = Path(work) if work is not None else Path(tmp)
        results = {}
        for role, seed in (("train", train_seed), ("eval", eval_seed)):
            world = root / f"world-{seed}-{accounts}x{days}"
            meta = {"seed": seed, "accounts": accounts, "days": days}
            cached = world / "detected.parquet"
            if cached.exists():
                say(f"reusing the {role} world's detection in {world}")
                events = pl.read_parquet(cached)
                prepared = Prepared(
                    detection=_Detected(events.lazy()), events=events, source=str(world / "logs")
                )
            else:
                say(f"simulating the {role} world (seed {seed}, {accounts} accounts x {days} days)")
                simulate(world, accounts=accounts, days=days, seed=seed)
                say(f"ingest, enrich, detect ({role})")
                prepared = prepare(
                    world / "logs",
                    cfg=cfg,
                    geoip_dir=world / "geoip",
                    practitioners=world / "practitioners.csv",
                )
                if work is not None:
                    prepared.events.write_parquet(cached)
            results[role] = (world, meta, prepared, read_labels(world / "labels" / "incidents.csv"))
        world, meta, prepared, labels = results["train"]
        say(f"training on {prepared.events.height} events")
        trained = train_frames(
            prepared, labels, out, world={"generator": "detector simulate", **meta}, max_iter=max_iter
        )
        say(trained.summary_text())
        world, meta, prepared, labels = results["eval"]
        say("evaluating on the held-out world")
        result = evaluate_prepared(
            prepared,
            labels,
            trained.model_file,
            cfg=cfg,
            world={"generator": "detector simulate", **meta},
            plan_csv=world / "geoip" / "address-plan.csv",
            behaviours=world / "labels" / "legit-behaviours.csv",
        )
        print(format_metrics(result.metrics), flush=True)
        return result.metrics


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m detector.score.reproduce", description=__doc__)
    p.add_argument("--out", default=str(OUT), help="model to write (NAME gives NAME.skops + NAME.card.json)")
    p.add_argument("--accounts", type=int, default=ACCOUNTS, help="accounts per simulated world")
    p.add_argument("--days", type=int, default=DAYS, help="days per simulated world")
    p.add_argument("--train-seed", type=int, default=TRAIN_SEED, help="seed of the training world")
    p.add_argument("--eval-seed", type=int, default=EVAL_SEED, help="seed of the held-out world")
    p.add_argument("--work", default=None, help="keep the worlds and detections here and reuse them")
    a = p.parse_args(argv)
    reproduce(
        a.out, accounts=a.accounts, days=a.days, train_seed=a.train_seed, eval_seed=a.eval_seed, work=a.work
    )


if __name__ == "__main__":
    main()
