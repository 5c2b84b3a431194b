"""What the live counters of ``detector serve`` would have done to a labelled world. Not a test.

    .venv/bin/python bench/serve_replay.py data/samples            # the bundled world
    .venv/bin/python bench/serve_replay.py WORLD --config FILE      # a world from `detector simulate`

Every login attempt of the world's logs, in time order, is first asked about (``evaluate``, with an
empty plan: only the live counters act) and then reported with its outcome, as Dovecot would. The
tally: attack and legitimate attempts answered allow, tarpit or refuse, and the tarpit seconds each
side would have waited. The replay does not model feedback (a tarpitted attacker makes fewer
attempts): it counts what the counters flag, the upper bound of the delay imposed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import polars as pl

from detector import config as cfgmod
from detector.ingest import ingest_to_parquet
from detector.labels import label_events
from detector.schema import C, Outcome
from detector.serve.engine import Engine, login_request
from detector.serve.index import PlanIndex


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path, help="a world written by `detector simulate` (logs/, labels/)")
    ap.add_argument("--config", type=Path, default=None, help="TOML with a [serve] section")
    args = ap.parse_args()
    cfg = cfgmod.load(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        events_path = Path(tmp) / "events.parquet"
        ingest_to_parquet([str(args.world / "logs")], events_path, cfg.ingest)
        events = (
            label_events(pl.scan_parquet(events_path), args.world / "labels" / "incidents.csv")
            .filter(pl.col(C.ACTION) == "login", pl.col(C.OUTCOME) != Outcome.UNKNOWN)
            .select(C.TIMESTAMP, C.ACCOUNT, C.SOURCE_IP, C.SERVICE, C.OUTCOME, "is_attack")
            .sort(C.TIMESTAMP)
            .collect()
        )
    engine = Engine(PlanIndex.empty(), cfg.serve)
    answers: Counter[tuple[str, str]] = Counter()
    waited: Counter[str] = Counter()
    rules: Counter[tuple[str, str]] = Counter()
    started = time.process_time()
    last_sweep = 0.0
    for ts, account, ip, service, outcome, is_attack in events.iter_rows():
        now = ts.timestamp()
        req = login_request({"login": account, "remote": ip, "protocol": service})
        d = engine.evaluate(req, now)
        side = "attack" if is_attack else "legitimate"
        answers[side, "allow" if d.status == 0 else "refuse" if d.status < 0 else "tarpit"] += 1
        waited[side] += max(0, d.status)
        if d.status:
            rules[side, d.rule] += 1
        engine.report(req, outcome == Outcome.SUCCESS, False, now)
        if now - last_sweep > cfg.serve.bucket_seconds:
            engine.sweep(now)
            last_sweep = now
    cpu = time.process_time() - started
    print(f"{args.world}: {events.height:,} login attempts replayed in {cpu:.1f} CPU s")
    for side in ("attack", "legitimate"):
        total = sum(n for (s, _), n in answers.items() if s == side)
        parts = ", ".join(
            f"{a} {answers[side, a]:,} ({100 * answers[side, a] / max(total, 1):.1f}%)"
            for a in ("allow", "tarpit", "refuse")
        )
        print(f"  {side}: {total:,} attempts: {parts}; tarpit {waited[side]:,} s in all")
        by_rule = ", ".join(f"{r} {n:,}" for (s, r), n in sorted(rules.items()) if s == side)
        print(f"    by rule: {by_rule or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
