"""Quality of the response plan on a held-out simulated world: plan from day N, replayed on day N+1.

Simulates a world (seed different from the model's training world), runs the nightly stages day by
day with history carried over (ingest, enrich, detect, score with the shipped model, or the rule
fallback when there is none), builds the plan from day N and replays it, with labels, on day N+1
beside a blanket shutdown, fail2ban's default jail and no action. Prints the table and a JSON line.

    .venv/bin/python bench/plan_quality.py [--seed 11] [--accounts 3000] [--days 4] [--day N [N ...]]

Several ``--day`` values replay each day's plan on the day after it in one pass over the world.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import polars as pl


def main(argv: list[str] | None = None) -> int:
    from detector.config import load
    from detector.detect import detect
    from detector.enrich import (
        enrich,
        find_databases,
        load_practitioners,
        merge_shared,
        shared_address_counts,
    )
    from detector.features.baseline import History, update_history
    from detector.ingest import ingest
    from detector.labels import label_events, read_labels
    from detector.pipeline import learnable_events
    from detector.recommend import combine_results, recommend, replay
    from detector.recommend.plan import known_networks
    from detector.score import load_model, score
    from detector.simulate import simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument(
        "--day", type=int, nargs="+", default=None, help="day(s) N (1-based) whose plan is replayed on N+1"
    )
    ap.add_argument("--all", action="store_true", help="every day N from 1 to the last but one")
    ap.add_argument("--world", type=Path, default=None, help="reuse a simulated world directory")
    ap.add_argument("--no-model", action="store_true", help="use the rule fallback even if a model exists")
    ap.add_argument("--config", type=Path, default=None, help="TOML configuration (e.g. [plan] budgets)")
    args = ap.parse_args(argv)
    cfg = load(args.config)
    plan_days = list(range(1, args.days)) if args.all else sorted(set(args.day or [args.days - 1]))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plan-quality-") as tmp:
        world = args.world or Path(tmp) / "world"
        if args.world is None:
            simulate(world, accounts=args.accounts, days=args.days, seed=args.seed)
        model = None
        if not args.no_model:
            try:
                from detector.pipeline import default_model_path

                model = load_model(default_model_path())
            except Exception as e:  # no shipped model yet: rule fallback
                print(f"(no model: {e}; rule fallback)", file=sys.stderr)
        geoip = find_databases(str(world / "geoip"))
        directory = load_practitioners(world / "practitioners.csv")
        labels = read_labels(world / "labels" / "incidents.csv")
        days = sorted(p for p in (world / "logs").iterdir() if p.is_dir())
        if plan_days[0] < 1 or plan_days[-1] >= len(days):
            ap.error(f"--day must be between 1 and {len(days) - 1} (the world has {len(days)} days)")
        history, shared = History.empty(), None
        plans, results = {}, {}
        for i, day in enumerate(days[: plan_days[-1] + 1], start=1):
            ingested = ingest([str(day)], cfg.ingest, Path(tmp) / f"work{i}")
            enriched = enrich(
                ingested.events, geoip=geoip, practitioners=directory, history_shared=shared, cfg=cfg.enrich
            )
            events = enriched.events.collect()
            if i - 1 in plans:
                results[i - 1] = replay(
                    plans[i - 1], label_events(events.lazy(), labels).collect(), None, cfg
                )
            if i in plan_days:
                detection = detect(events, cfg, history)
                scores = score(detection, model, cfg)
                now = events.get_column("timestamp").max() + timedelta(seconds=1)
                plans[i] = recommend(scores, detection, cfg, now, known_networks=known_networks(history))
            learned = events.lazy()
            if i in plan_days:  # as the nightly job: the attacker's logins are not the owner's history
                learned = learnable_events(scores.events.lazy(), scores, cfg)
            history = update_history(history, learned)
            shared = merge_shared(shared_address_counts(learned), shared)
    for day_n in plan_days:
        plan, result = plans[day_n], results[day_n]
        print(
            f"world {args.world or f'seed {args.seed}, {args.accounts} accounts'}; "
            f"plan from day {day_n} replayed on day {day_n + 1}"
        )
        print(plan.group_by("action", "target_type").len().sort("action", "target_type"))
        print(result.render())
        print(
            json.dumps(
                {
                    "world": str(args.world) if args.world else f"seed {args.seed}",
                    "day": day_n,
                    "model": model is not None,
                    "seconds": round(time.perf_counter() - started, 1),
                    "table": result.table.to_dicts(),
                }
            )
        )
        print(verdict(result), "\n")
    if len(plan_days) > 1:
        world = combine_results([results[d] for d in plan_days])
        print(f"all {len(plan_days)} day pairs together (counts summed):")
        print(world.render())
        print(verdict(world))
        print(json.dumps({"world": str(args.world) if args.world else f"seed {args.seed}", "days": plan_days,
                          "table": world.table.to_dicts()}))  # fmt: skip
    return 0


TARGETS = (
    ("attack_stopped_pct", ">=", 90.0, "attack attempts stopped"),
    ("attacker_logins_pct", "<=", 20.0, "attacker logins succeeding"),
    ("legit_refused_pct", "<=", 0.5, "legitimate logins refused"),
    ("practitioner_refused_pct", "<=", 0.1, "practitioners' logins refused"),
)
"""The response-plan issue's quality targets for the plan, on a held-out world."""


def verdict(result) -> str:
    """``targets: met`` or the targets the plan misses, with its figures."""
    row = result.row("plan")
    missed = [
        f"{what} {row[key]:.2f}% (target {op} {bound}%)"
        for key, op, bound, what in TARGETS
        if row[key] is not None and (row[key] < bound if op == ">=" else row[key] > bound)
    ]
    return "targets: met" if not missed else "targets missed: " + "; ".join(missed)


if __name__ == "__main__":
    pl.Config.set_tbl_rows(30)
    sys.exit(main())
