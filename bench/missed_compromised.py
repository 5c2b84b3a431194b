"""Why compromised accounts are missed: on development worlds, every compromised account no plan
locked or reset, with what the night's scoring saw of it and a class.

    .venv/bin/python bench/missed_compromised.py --seed 700001 700002 [--accounts 3000] [--days 3] [--warmup W]

Development seeds only (never a seed of ``bench/fresh_worlds.toml`` or the tuned worlds: refused).
Prints one JSON line per missed account (with the reasons of the restrictions later plans put on
it), then the count per class and how many missed accounts a plan restricted. Classes (first that
applies):

- ``scored-compromised-not-entered``: the verdict was compromised but the plan found no success it
  counts as not the owner's (``entered``), so it neither reset nor locked;
- ``under-threshold``: the account scored suspicious (``account_suspicious`` up to
  ``account_compromised``) on some night;
- when the successful guess was the only attacker login the night saw (nothing of a takeover yet):
  ``first-try: hosting/VPN/Tor`` (the guess came from anonymous infrastructure),
  ``first-try: shared address`` (an address where ``shared_address_min_accounts`` accounts log in:
  a carrier's CGNAT gateway), ``first-try: one-use residential proxy`` (an address that tried no
  other account in the world), ``first-try: residential proxy`` (one that tried other accounts too);
- ``takeover: anonymous`` / ``takeover: residential``: takeover logins followed before the plan,
  the guess from that kind of address, and the account still scored clean or targeted;
- ``not-seen``: no labelled success of the account reached the night's events.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))


def missed(world: Path, plans: dict, scored: dict) -> list[dict]:
    """One row per compromised account no plan locked or reset (as ``account_figures`` counts)."""
    from detector.labels import label_events, read_labels
    from detector.recommend.context import LOCK, RESET
    from detector.schema import C, Outcome

    labels = read_labels(world / "labels" / "incidents.csv")
    compromised = labels.filter(pl.col("compromised"))
    acted: set[str] = set()
    truth: dict[str, int] = {}
    for day, plan in sorted(plans.items()):
        now = plan.get_column("_now")[0]
        acted |= set(
            plan.filter(pl.col("action").is_in([LOCK, RESET]) & (pl.col("target_type") == "account"))
            .get_column("target")
            .str.to_lowercase()
            .to_list()
        )
        for a in compromised.filter(pl.col("start") < now).get_column("account").unique().to_list():
            truth.setdefault(a, day)
    lost = sorted(set(truth) - acted)
    rows = []
    for account in lost:
        row: dict = {"account": account, "truth_from_plan": truth[account]}
        row["restricted_by"] = sorted(
            {
                str(r)
                for day, plan in plans.items()
                if day >= truth[account]
                for r in plan.filter(
                    (pl.col("action") == "restrict_account")
                    & (pl.col("target").str.to_lowercase() == account)
                ).get_column("reason")
            }
        )
        breaks = compromised.filter(pl.col("account") == account).sort("start")
        row["campaign"] = breaks.get_column("campaign")[0]
        nights = []
        ok_events = []
        for day, scores in sorted(scored.items()):
            if day < truth[account]:
                continue
            acc = scores.accounts.filter(pl.col(C.ACCOUNT).str.to_lowercase() == account)
            nights.append(
                {
                    "day": day,
                    "verdict": acc.get_column("verdict")[0] if acc.height else None,
                    "risk": round(float(acc.get_column(C.RISK_SCORE)[0]), 3) if acc.height else None,
                    "reasons": acc.get_column("reasons")[0].to_list() if acc.height else [],
                }
            )
            ev = label_events(
                scores.events.lazy().filter(pl.col(C.ACCOUNT).str.to_lowercase() == account), labels
            ).collect()
            ok_events.append(
                ev.filter(pl.col(C.OUTCOME) == Outcome.SUCCESS).with_columns(pl.lit(day).alias("_day"))
            )
        row["nights"] = nights
        ok = pl.concat(ok_events, how="diagonal_relaxed") if ok_events else pl.DataFrame()
        bad = ok.filter(pl.col("is_attack").fill_null(False)).sort(C.TIMESTAMP) if ok.height else ok
        row["attacker_successes"] = bad.height
        if bad.height:
            first = bad.row(0, named=True)
            row["break"] = {
                "day": first["_day"],
                "service": first[C.SERVICE],
                "risk": round(float(first[C.RISK_SCORE]), 3),
                "anonymous": bool(first[C.IS_HOSTING] or first[C.IS_VPN] or first[C.IS_TOR]),
                "ip_legit_accounts": first.get(C.IP_LEGIT_ACCOUNTS),
                "campaign_flag": first.get(C.CAMPAIGN),
                "detectors": list(first[C.DETECTORS] or []),
                "technique": first["label_technique"],
            }
            tried = (
                pl.concat([sc.events.lazy().filter(pl.col(C.SOURCE_IP) == first[C.SOURCE_IP]).collect()
                           for sc in scored.values()], how="diagonal_relaxed")
                .filter(pl.col(C.ACCOUNT).is_not_null() & (pl.col(C.ACCOUNT).str.to_lowercase() != account))
                .get_column(C.ACCOUNT).n_unique()
            )  # fmt: skip
            row["break"]["source_other_accounts"] = tried
            row["max_attacker_risk"] = round(float(bad.get_column(C.RISK_SCORE).max()), 3)
            row["legit_successes"] = ok.height - bad.height
        row["class"] = classify(row)
        rows.append(row)
    return rows


def false_locks(world: Path, plans: dict, scored: dict) -> list[dict]:
    """One row per account a plan locked or reset that no label calls compromised."""
    from detector.labels import read_labels
    from detector.recommend.context import LOCK, RESET
    from detector.schema import C

    truth = set(
        read_labels(world / "labels" / "incidents.csv").filter(pl.col("compromised")).get_column("account")
    )
    rows = []
    for day, plan in sorted(plans.items()):
        hit = plan.filter(pl.col("action").is_in([LOCK, RESET]) & (pl.col("target_type") == "account"))
        for account in sorted(set(hit.get_column("target").str.to_lowercase()) - truth):
            acc = scored[day].accounts.filter(pl.col(C.ACCOUNT).str.to_lowercase() == account)
            rows.append(
                {
                    "false_lock": account,
                    "day": day,
                    "verdict": acc.get_column("verdict")[0] if acc.height else None,
                    "risk": round(float(acc.get_column(C.RISK_SCORE)[0]), 3) if acc.height else None,
                    "practitioner": bool(acc.get_column(C.IS_PRACTITIONER)[0]) if acc.height else None,
                    "reasons": acc.get_column("reasons")[0].to_list() if acc.height else [],
                }
            )
    return rows


MEASURES = (
    ("block", pl.col("action") == "block"),
    ("lock/reset", pl.col("action").is_in(["lock_account", "reset_credentials"])),
    ("restrict: new network", pl.col("reason").str.contains("network new to it")),
    (
        "restrict: light, practitioner (SMTP AUTH)",
        pl.col("reason").str.contains("SMTP AUTH only") & ~pl.col("reason").str.contains("network new to it"),
    ),
    ("restrict: light, SMTP AUTH own networks", pl.col("reason").str.starts_with("sending by SMTP AUTH")),
    (
        "restrict: light",
        pl.col("reason").str.contains("on the attackers' lists")
        & ~pl.col("reason").str.contains("SMTP AUTH only"),
    ),
    ("restrict: distributed attack", pl.col("reason").str.contains("distributed attack")),
    (
        "restrict: other",
        (pl.col("action") == "restrict_account")
        & ~pl.col("reason").str.contains("on the attackers' lists|distributed attack|network new to it")
        & ~pl.col("reason").str.starts_with("sending by SMTP AUTH"),
    ),
)
"""The plan's measures, by kind, whose refusals of legitimate logins are counted apart."""


def refusals_by_measure(plans: dict, kept: dict, cfg) -> dict[str, dict[str, int]]:
    """Legitimate and practitioners' logins each kind of measure refuses on the next day (summed)."""
    from detector.recommend import replay

    out: dict[str, dict[str, int]] = {}
    for day, plan in plans.items():
        labelled = kept[day].get("next")
        if labelled is None:
            continue
        for name, which in MEASURES:
            row = replay(plan.filter(which.fill_null(False)), labelled, None, cfg).row("plan")
            got = out.setdefault(name, {"legit": 0, "practitioner": 0, "practitioner_logins": 0})
            got["legit"] += int(row["legit_refused"])
            got["practitioner"] += int(row["practitioner_refused"])
            got["practitioner_logins"] += int(row["practitioner_logins"])
    return out


PER_DAY = (
    "legit_logins",
    "legit_refused",
    "practitioner_logins",
    "practitioner_refused",
    "attack_attempts",
    "attack_stopped_pct",
    "attacker_logins_pct",
)


def per_day(results: dict) -> dict[int, dict]:
    """Each day pair's replay (plan of day N on day N+1): the first night's plan has no history."""
    return {day: {k: result.row("plan")[k] for k in PER_DAY} for day, result in sorted(results.items())}


def classify(row: dict) -> str:
    from detector.schema import Verdict

    verdicts = [n["verdict"] for n in row["nights"]]
    if Verdict.COMPROMISED in verdicts:
        return "scored-compromised-not-entered"
    if Verdict.SUSPICIOUS in verdicts:
        return "under-threshold"
    if not row.get("attacker_successes"):
        return "not-seen"
    b = row["break"]
    kind = "anonymous" if b["anonymous"] else "residential"
    if row["attacker_successes"] > 1:
        return f"takeover: {kind}"
    if b["anonymous"]:
        return "first-try: hosting/VPN/Tor"
    if (b["ip_legit_accounts"] or 0) >= 3:
        return "first-try: shared address"
    if b["source_other_accounts"] == 0:
        return "first-try: one-use residential proxy"
    return "first-try: residential proxy"


def main(argv: list[str] | None = None) -> int:
    from plan_quality import FRESH_FILE, TUNED_SEEDS, account_figures, read_record, run_world

    from detector.config import load
    from detector.labels import read_labels
    from detector.pipeline import default_model_path
    from detector.score import load_model
    from detector.simulate import simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, nargs="+", required=True)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=0, metavar="W", help="no plan on the first W days")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--config", type=Path, default=None)
    args = ap.parse_args(argv)
    recorded = {int(w["seed"]) for p in FRESH_FILE.parent.glob("fresh_worlds*.toml") for w in read_record(p)}
    if bad := sorted(set(args.seed) & (recorded | set(TUNED_SEEDS))):
        raise SystemExit(f"seeds {bad} are recorded fresh or tuned worlds: use development seeds")
    cfg = load(args.config)
    model = load_model(args.model or default_model_path())
    classes: Counter = Counter()
    found = total = contained = 0
    for seed in args.seed:
        with tempfile.TemporaryDirectory(prefix="missed-") as tmp:
            world = Path(tmp) / "world"
            simulate(world, accounts=args.accounts, days=args.days, seed=seed, mix="drawn")
            kept: dict = {}
            plans, results = run_world(
                world, list(range(1 + args.warmup, args.days)), cfg, model, Path(tmp), kept=kept
            )
            scored = {day: k["scores"] for day, k in kept.items()}
            figures = account_figures(plans, read_labels(world / "labels" / "incidents.csv"), args.accounts)
            rows = missed(world, plans, scored)
            wrong = false_locks(world, plans, scored)
            refusals = refusals_by_measure(plans, kept, cfg)
        total += figures["compromised"]
        found += figures["compromised"] - len(rows)
        print(json.dumps({"seed": seed} | figures | {"per_day": per_day(results)}), flush=True)
        for row in rows:
            classes[row["class"]] += 1
            contained += bool(row["restricted_by"])
            print(json.dumps({"seed": seed} | row, default=str), flush=True)
        for row in wrong:
            print(json.dumps({"seed": seed} | row, default=str), flush=True)
        print(json.dumps({"seed": seed, "refused_by_measure": refusals}), flush=True)
    print(
        json.dumps(
            {
                "compromised": total,
                "found": found,
                "missed_restricted": contained,
                "missed_by_class": dict(classes.most_common()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
