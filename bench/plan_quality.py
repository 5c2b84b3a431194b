"""Quality of the response plan on a held-out simulated world: plan from day N, replayed on day N+1.

Simulates a world (seed different from the model's training world), runs the nightly stages day by
day with history carried over (ingest, enrich, detect, score with the shipped model, or the rule
fallback when there is none), builds the plan from day N and replays it, with labels, on day N+1
beside a blanket shutdown, fail2ban's default jail and no action. Prints the table and a JSON line.

    .venv/bin/python bench/plan_quality.py [--seed 11] [--accounts 3000] [--days 4] [--day N [N ...]]
    .venv/bin/python bench/plan_quality.py --fresh K [--accounts 3000] [--days 3]   # K unseen worlds
    .venv/bin/python bench/plan_quality.py --fresh K --days 4 --warmup 1            # ... after a night of state
    .venv/bin/python bench/plan_quality.py --summary                               # the recorded ones

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


def run_world(
    world: Path,
    plan_days: list[int],
    cfg,
    model,
    work: Path,
    by_technique: dict | None = None,
    kept: dict | None = None,
) -> tuple[dict, dict]:
    """Run the nightly stages day by day over ``world``; return the plans and their next-day replays.

    With ``kept`` (a dict), also keeps each plan day's scores and the labelled events its plan was
    replayed on: ``kept[day]["scores"]``, ``kept[day]["next"]`` (``bench/missed_compromised.py``).

    With ``by_technique`` (a dict), also replays each plan against each attack technique alone
    (the other techniques' events left out) and on existing accounts only: ``by_technique[day]``
    is :func:`technique_replays`.
    """
    from detector.engine import Prior, analyse
    from detector.enrich import (
        find_databases,
        load_practitioners,
        merge_shared,
        shared_address_counts,
    )
    from detector.features.baseline import History, update_history
    from detector.ingest import ingest
    from detector.labels import label_events, read_labels
    from detector.recommend import recommend, replay
    from detector.recommend.history import known_networks
    from detector.state import State, learnable_events

    geoip = find_databases(str(world / "geoip"))
    directory = load_practitioners(world / "practitioners.csv")
    labels = read_labels(world / "labels" / "incidents.csv")
    days = sorted(p for p in (world / "logs").iterdir() if p.is_dir())
    if plan_days[0] < 1 or plan_days[-1] >= len(days):
        raise SystemExit(f"--day must be between 1 and {len(days) - 1} (the world has {len(days)} days)")
    history, shared = History.empty(), None
    plans, results = {}, {}
    for i, day in enumerate(days[: plan_days[-1] + 1], start=1):
        ingested = ingest([str(day)], cfg.ingest, work / f"work{i}")
        # the nightly job's analysis (detector.engine), against the days before as its state
        prior = Prior(State(history=history.to_frames(), shared=shared))
        analysis = analyse(
            ingested.events, cfg, work_dir=work / f"work{i}", prior=prior, geoip=geoip, practitioners=directory,
            model=model, until="score" if i in plan_days else "enrich",
        )  # fmt: skip
        events = analysis.events.collect()
        if i - 1 in plans:
            labelled = label_events(events.lazy(), labels).collect()
            results[i - 1] = replay(plans[i - 1], labelled, None, cfg)
            if kept is not None:
                kept[i - 1]["next"] = labelled
            if by_technique is not None:
                made = events.get_column("timestamp").min()  # the plan was made before this day
                known = labels.filter(pl.col("compromised") & (pl.col("start") < made))
                by_technique[i - 1] = technique_replays(
                    plans[i - 1], labelled, cfg, known.get_column("account").str.to_lowercase().to_list()
                )
        if i in plan_days:
            detection, scores = analysis.detection, analysis.scores
            if kept is not None:
                kept[i] = {"scores": scores}
            now = events.get_column("timestamp").max() + timedelta(seconds=1)
            plans[i] = recommend(scores, detection, cfg, now, known_networks=known_networks(history))
            plans[i] = plans[i].with_columns(pl.lit(now).alias("_now"))
        learned = events.lazy()
        if i in plan_days:  # as the nightly job: the attacker's logins are not the owner's history
            learned = learnable_events(scores.events.lazy(), scores, cfg)
        history = update_history(history, learned)
        shared = merge_shared(shared_address_counts(learned), shared)
    return plans, results


EXISTING = "existing"
"""Suffix of the replays and figures counting only attack attempts on accounts that exist (the
server did not answer ``unknown_user``): a name that does not exist fails at the server anyway."""
KNOWN = "known"
"""Suffix of the replay counting only the attacks on accounts compromised before the plan was made
(what a plan made that night could know of); the others were compromised on the replayed day."""
ALL = "all"
"""Key of the replay of every attack technique together in :func:`technique_replays`."""


def technique_replays(
    plan: pl.DataFrame, labelled: pl.DataFrame, cfg, compromised_before: list[str] | None = None
) -> dict:
    """The plan replayed against each attack technique alone (the others' events left out), and
    against every technique (``all``), each also on the attempts at existing accounts only
    (``<technique>/existing``); with ``compromised_before`` (accounts compromised before the plan
    was made), also against the attacks on those accounts only (``all/known``)."""
    from detector.recommend import replay
    from detector.schema import C, Outcome

    attack = pl.col("is_attack").fill_null(False)
    on_existing = ~(attack & (pl.col(C.OUTCOME) == Outcome.UNKNOWN_USER).fill_null(False))
    techniques = labelled.filter(attack).get_column("label_technique").unique().drop_nulls().sort()
    out = {}
    for t in [ALL, *techniques]:
        kept = labelled if t == ALL else labelled.filter(~attack | (pl.col("label_technique") == t))
        if t != ALL:
            out[t] = replay(plan, kept, None, cfg)
        out[f"{t}/{EXISTING}"] = replay(plan, kept.filter(on_existing), None, cfg)
    if compromised_before is not None:
        known = pl.col(C.ACCOUNT).str.to_lowercase().is_in(compromised_before).fill_null(False)
        out[f"{ALL}/{KNOWN}"] = replay(plan, labelled.filter(~attack | known), None, cfg)
    return out


def account_figures(plans: dict, labels: pl.DataFrame, accounts: int) -> dict[str, float | None]:
    """Compromised accounts found by the plans (locked or reset) and false locks per 10,000 accounts.

    An account counts as compromised on day N when a compromised label row starts before that
    day's plan; found when the plan of that day (or an earlier one) locks or resets it.
    """
    from detector.recommend.context import LOCK, RESET

    truth, found, false = set(), set(), set()
    acted: set[str] = set()
    for _, plan in sorted(plans.items()):
        now = plan.get_column("_now")[0] if plan.height else None
        if now is None:
            continue
        acted |= set(
            plan.filter(pl.col("action").is_in([LOCK, RESET]) & (pl.col("target_type") == "account"))
            .get_column("target")
            .str.to_lowercase()
            .to_list()
        )
        truth_now = set(
            labels.filter(pl.col("compromised") & (pl.col("start") < now)).get_column("account").to_list()
        )
        truth |= truth_now
        found |= acted & truth_now
        false |= acted - set(labels.filter(pl.col("compromised")).get_column("account").to_list())
    return {
        "compromised": len(truth),
        "compromised_found_pct": round(100 * len(found) / len(truth), 2) if truth else None,
        "false_locks": len(false),
        "false_locks_per_10k": round(10_000 * len(false) / accounts, 2),
    }


def technique_figures(by_technique: dict) -> dict[str, dict[str, float | int | None]]:
    """Per attack technique, over the day pairs: attempts, share stopped, logins and share still in."""
    from detector.recommend import combine_results

    def pct(v) -> float | None:
        return None if v is None else round(float(v), 2)

    out = {}
    for t in sorted({t for day in by_technique.values() for t in day if "/" not in t}):
        row = combine_results([day[t] for day in by_technique.values() if t in day]).row("plan")
        out[t] = {
            "attempts": int(row["attack_attempts"]),
            "stopped_pct": pct(row["attack_stopped_pct"]),
            "logins": int(row["attacker_logins"]),
            "logins_in_pct": pct(row["attacker_logins_pct"]),
        }
        on = [day[f"{t}/{EXISTING}"] for day in by_technique.values() if f"{t}/{EXISTING}" in day]
        if on:
            row = combine_results(on).row("plan")
            out[t] |= {
                "attempts_existing": int(row["attack_attempts"]),
                "stopped_existing_pct": pct(row["attack_stopped_pct"]),
            }
    return out


def existing_figures(by_technique: dict) -> dict[str, float | int | None]:
    """Next-day attack attempts on existing accounts (every technique) and the share stopped."""
    from detector.recommend import combine_results

    on = [day[f"{ALL}/{EXISTING}"] for day in by_technique.values() if f"{ALL}/{EXISTING}" in day]
    if not on:
        return {}
    row = combine_results(on).row("plan")
    stopped = row["attack_stopped_pct"]
    out = {
        "attack_attempts_existing": int(row["attack_attempts"]),
        "attack_stopped_existing_pct": None if stopped is None else round(float(stopped), 3),
    }
    known = [day[f"{ALL}/{KNOWN}"] for day in by_technique.values() if f"{ALL}/{KNOWN}" in day]
    if known:
        row = combine_results(known).row("plan")
        inside = row["attacker_logins_pct"]
        out |= {
            "attacker_logins_known": int(row["attacker_logins"]),
            "attacker_logins_known_pct": None if inside is None else round(float(inside), 3),
        }
    return out


def world_figures(plans: dict, results: dict, world: Path, accounts: int) -> dict[str, float | None]:
    """The six target figures of one world, its day pairs summed."""
    from detector.labels import read_labels
    from detector.recommend import combine_results

    row = combine_results([results[d] for d in sorted(results)]).row("plan")
    labels = read_labels(world / "labels" / "incidents.csv")
    out = account_figures(plans, labels, accounts)
    for key, *_ in TARGETS:
        if key in row:
            out[key] = None if row[key] is None else round(float(row[key]), 3)
    out["attack_attempts"] = int(row["attack_attempts"])
    return out


def main(argv: list[str] | None = None) -> int:
    from detector.config import load
    from detector.recommend import combine_results
    from detector.score import load_model
    from detector.simulate import simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument(
        "--day", type=int, nargs="+", default=None, help="day(s) N (1-based) whose plan is replayed on N+1"
    )
    ap.add_argument("--all", action="store_true", help="every day N from 1 to the last but one")
    ap.add_argument(
        "--warmup",
        type=int,
        default=0,
        metavar="W",
        help="with --all or --fresh: no plan on the first W days (their nights only build the state)",
    )
    ap.add_argument("--world", type=Path, default=None, help="reuse a simulated world directory")
    ap.add_argument("--mix", choices=("fixed", "drawn"), default="fixed", help="attack mix of --seed's world")
    ap.add_argument(
        "--fresh",
        type=int,
        default=0,
        metavar="K",
        help="K fresh worlds (seeds never used before, drawn mixes, every day pair), recorded in --record",
    )
    ap.add_argument("--record", type=Path, default=FRESH_FILE, help="where fresh worlds are recorded")
    ap.add_argument(
        "--tuned",
        action="store_true",
        help="measure the tuned worlds (fixed mix, seeds 11-131; K of them with --fresh K) into tuned_worlds.toml",
    )
    ap.add_argument("--summary", action="store_true", help="only summarise the recorded worlds")
    ap.add_argument(
        "--round", type=int, nargs="+", default=None, help="with --summary: only these rounds of fresh worlds"
    )
    ap.add_argument(
        "--same-worlds-as",
        type=Path,
        default=None,
        help="with --fresh: the worlds recorded in that file (e.g. another model on the same worlds)",
    )
    ap.add_argument("--no-model", action="store_true", help="use the rule fallback even if a model exists")
    ap.add_argument("--model", type=Path, default=None, help="a model file instead of the shipped one")
    ap.add_argument("--config", type=Path, default=None, help="TOML configuration (e.g. [plan] budgets)")
    args = ap.parse_args(argv)
    cfg = load(args.config)
    if args.tuned:
        args.record, args.fresh = TUNED_FILE, min(args.fresh or len(TUNED_SEEDS), len(TUNED_SEEDS))
        if TUNED_FILE.exists():
            TUNED_FILE.unlink()
    if args.summary:
        worlds = [
            w for w in read_record(args.record) if args.round is None or int(w.get("round", 1)) in args.round
        ]
        print(summarise(worlds, read_record(TUNED_FILE)))
        return 0
    model = None
    if not args.no_model:
        try:
            from detector.pipeline import default_model_path

            model = load_model(args.model or default_model_path())
        except Exception as e:  # no shipped model yet: rule fallback
            print(f"(no model: {e}; rule fallback)", file=sys.stderr)
    if args.fresh:
        return fresh(args, cfg, model)
    plan_days = (
        list(range(1 + args.warmup, args.days)) if args.all else sorted(set(args.day or [args.days - 1]))
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plan-quality-") as tmp:
        world = args.world or Path(tmp) / "world"
        if args.world is None:
            simulate(world, accounts=args.accounts, days=args.days, seed=args.seed, mix=args.mix)
        plans, results = run_world(world, plan_days, cfg, model, Path(tmp))
        figures = world_figures(plans, results, world, args.accounts)
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
    print(json.dumps({"figures": figures}))
    return 0


FRESH_FILE = Path(__file__).with_name("fresh_worlds.toml")
TUNED_FILE = Path(__file__).with_name("tuned_worlds.toml")
TUNED_SEEDS = (11, 23, 37, 53, 71, 83, 97, 109, 131)
"""The fixed-mix worlds the rules were tuned or studied on (109, 131: measured once before)."""


def read_record(path: Path) -> list[dict]:
    import tomllib

    if not path.exists():
        return []
    return tomllib.loads(path.read_text()).get("world", [])


def append_record(path: Path, entry: dict) -> None:
    """Append one world as a ``[[world]]`` table (hand-written TOML: flat scalars, lists, one sub-table)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return "nan" if v is None else repr(v)

    if not path.exists():
        path.write_text(RECORD_HEADER)
    lines = ["", "[[world]]"]
    lines += [f"{k} = {value(v)}" for k, v in entry.items() if not isinstance(v, dict)]
    for k, v in entry.items():
        if isinstance(v, dict):
            lines += ["", f"[world.{k}]"] + [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")


RECORD_HEADER = """\
# Fresh worlds of bench/plan_quality.py --fresh: seeds drawn from the operating system's randomness,
# attack mixes drawn from the seed (detector simulate --mix drawn), measured once and recorded here.
# Never tune on these worlds: the next round draws new ones (the seeds here are excluded).
# nan: the figure has no denominator in that world. Summary: bench/plan_quality.py --summary
# Rerun one world (same figures, at its `code` commit): bench/plan_quality.py --seed S --mix drawn
#   --accounts A --days D --all
"""


def code_version() -> str:
    """The commit the world was measured with (``+dirty``: the code or model differed): reruns need it."""
    import subprocess

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=Path(__file__).parent).stdout

    head = git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
    return head + (
        "+dirty"
        if git("status", "--porcelain", "--untracked-files=no", "--", "detector", "models", __file__).strip()
        else ""
    )


def fresh(args, cfg, model) -> int:
    """Draw ``args.fresh`` unseen seeds, measure each world once, record it, print the summary."""
    import datetime as dt
    import os
    import secrets

    from detector.simulate import simulate

    recorded = read_record(args.record)
    every = [args.record, *FRESH_FILE.parent.glob("fresh_worlds*.toml")]  # no seed twice in any record
    used = {int(w["seed"]) for path in every for w in read_record(path)}
    round_no = max((int(w.get("round", 1)) for w in recorded), default=0) + 1
    plan_days = list(range(1 + args.warmup, args.days))
    if not plan_days:
        raise SystemExit(f"--warmup {args.warmup} leaves no day pair in {args.days} days")
    tuned = args.record == TUNED_FILE
    mix = "fixed" if tuned else "drawn"
    for i in range(args.fresh):
        if tuned:  # the worlds the rules were tuned or studied on, with the fixed mix
            seed = TUNED_SEEDS[i]
        elif args.same_worlds_as is not None:
            seed = int(read_record(args.same_worlds_as)[i]["seed"])
        else:
            seed = secrets.randbits(31)
            while seed in used or seed < 1000:
                seed = secrets.randbits(31)
            used.add(seed)
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="plan-quality-") as tmp:
            world = Path(tmp) / "world"
            sim = simulate(world, accounts=args.accounts, days=args.days, seed=seed, mix=mix)
            per_technique: dict = {}
            plans, results = run_world(world, plan_days, cfg, model, Path(tmp), per_technique)
            figures = world_figures(plans, results, world, args.accounts) | existing_figures(per_technique)
        entry = {
            "round": round_no,
            "seed": seed,
            "code": code_version(),
            "measured": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "accounts": args.accounts,
            "days": args.days,
            "day_pairs": len(plan_days),
            "warmup": args.warmup,
            "model": model.model_id if model is not None else "rules",
            "seconds": round(time.perf_counter() - began, 1),
            "load": round(os.getloadavg()[0], 1),
            **figures,
            "by_technique": technique_figures(per_technique),
            "mix": {k: v for k, v in sim.mix.summary().items() if k != "drawn"},
        }
        entry["mix"]["takeover_infra"] = list(sim.mix.takeover_infra or ())
        append_record(args.record, entry)
        print(json.dumps({k: v for k, v in entry.items() if k != "mix"}), flush=True)
    print(summarise(read_record(FRESH_FILE if tuned else args.record), read_record(TUNED_FILE)))
    return 0


ALL_TARGETS = (
    ("compromised_found_pct", ">=", 95.0, "compromised accounts found"),
    ("false_locks_per_10k", "<=", 1.0, "false locks per 10,000 accounts"),
)
"""The issue's account targets, beside the plan's replay targets (``TARGETS``)."""


def summarise(worlds: list[dict], tuned: list[dict]) -> str:
    """Per target: median, worst decile and worlds meeting it, fresh beside tuned; then per technique."""
    import math

    import numpy as np

    def known(values) -> list[float]:
        """The figures a world has (None or nan: no denominator in that world)."""
        return [float(v) for v in values if v is not None and not math.isnan(float(v))]

    def stats(rows: list[dict], key: str, op: str, bound: float) -> str:
        vals = known(w.get(key) for w in rows)
        if not vals:
            return f"{'-':>8} {'-':>10} {'-':>7}"
        worst = np.percentile(vals, 10 if op == ">=" else 90)
        met = sum(v >= bound if op == ">=" else v <= bound for v in vals)
        return f"{np.median(vals):8.2f} {worst:10.2f} {f'{met}/{len(vals)}':>7}"

    def sizes(rows: list[dict]) -> str:
        return ", ".join(
            f"{a} accounts x {d} days" + (f", first {u} without a plan" if u else "")
            for a, d, u in sorted({(w["accounts"], w["days"], int(w.get("warmup", 0))) for w in rows})
        )

    if not worlds:
        return "no fresh world recorded"
    rounds = sorted({int(w.get("round", 1)) for w in worlds})
    out = [f"rounds {', '.join(map(str, rounds))}: each round's worlds measured once, never tuned on"]
    out += [
        f"{len(worlds)} fresh worlds ({sizes(worlds)}); tuned: {len(tuned)} fixed-mix worlds ({sizes(tuned)})"
    ]
    head = f"{'median':>8} {'worst 10%':>10} {'met':>7}"
    out.append(f"{'target':<34} {'bound':>7}  fresh: {head}   tuned: {head}")
    for key, op, bound, what in (
        ALL_TARGETS + TARGETS[:1] + EXISTING_TARGETS + TARGETS[1:2] + KNOWN_TARGETS + TARGETS[2:]
    ):
        out.append(
            f"{what:<34} {op + str(bound):>7}  {stats(worlds, key, op, bound)}          {stats(tuned, key, op, bound)}"
        )
    for name, group in (("fresh", worlds), ("tuned", tuned)):
        rows = [w for w in group if "by_technique" in w]
        if not rows:
            continue
        out.append(f"per technique, {len(rows)} {name} worlds (median; worst decile):")
        for t in sorted({t for w in rows for t in w["by_technique"]}):
            got = [w["by_technique"][t] for w in rows if t in w["by_technique"]]
            stop = known(g["stopped_pct"] for g in got)
            inside = known(g["logins_in_pct"] for g in got)
            text = f"  {t:<24} attempts stopped"
            text += f" {np.median(stop):6.1f}%; {np.percentile(stop, 10):6.1f}%" if stop else " -"
            existing = known(g.get("stopped_existing_pct") for g in got)
            if existing:
                text += f"   on existing accounts {np.median(existing):6.1f}%; {np.percentile(existing, 10):6.1f}%"
            if inside:
                text += f"   attacker logins still in {np.median(inside):6.1f}%; {np.percentile(inside, 90):6.1f}%"
            out.append(text)
    return "\n".join(out)


TARGETS = (
    ("attack_stopped_pct", ">=", 90.0, "attack attempts stopped"),
    ("attacker_logins_pct", "<=", 20.0, "attacker logins succeeding"),
    ("legit_refused_pct", "<=", 0.5, "legitimate logins refused"),
    ("practitioner_refused_pct", "<=", 0.1, "practitioners' logins refused"),
)
"""The response-plan issue's quality targets for the plan, on a held-out world."""
EXISTING_TARGETS = (("attack_stopped_existing_pct", ">=", 90.0, "  those on existing accounts"),)
"""Attack attempts stopped, counting only attempts on accounts that exist (proposed definition)."""
KNOWN_TARGETS = (("attacker_logins_known_pct", "<=", 20.0, "  on accounts compromised before"),)
"""Attacker logins still in, counting only accounts compromised before the plan was made."""


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
