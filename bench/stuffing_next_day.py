"""What the next day's credential stuffing is made of, and what share of each kind the plan stops.

Runs a world as ``bench/plan_quality.py`` does (each day's plan replayed on the next day) and
splits each next-day stuffing attempt by its target (a name that does not exist, an account tried
by stuffing on an earlier day, an account the list reaches for the first time) and by its source
(an address the stuffing used on an earlier day or a new one). The split bounds what a kind of
measure can do: a measure for the accounts on tonight's list reaches only the retries; a block of
tonight's proxies only the reused addresses.

    .venv/bin/python bench/stuffing_next_day.py --seed S [--accounts 3000] [--days 3]

Develop on seeds you draw yourself, never on a world recorded in ``bench/*worlds*.toml``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))

STUFFING = "credential_stuffing"


def stuffing_attempts(world: Path, cfg) -> list[pl.DataFrame]:
    """Per day: the labelled login attempts of the stuffing (timestamp, account, source, outcome)."""
    from detector.enrich import enrich, find_databases, load_practitioners
    from detector.ingest import ingest
    from detector.labels import label_events, read_labels

    geoip = find_databases(str(world / "geoip"))
    directory = load_practitioners(world / "practitioners.csv")
    labels = read_labels(world / "labels" / "incidents.csv")
    out = []
    with tempfile.TemporaryDirectory(prefix="stuffing-") as tmp:
        for i, day in enumerate(sorted(p for p in (world / "logs").iterdir() if p.is_dir())):
            events = enrich(
                ingest([str(day)], cfg.ingest, Path(tmp) / f"w{i}").events,
                geoip=geoip,
                practitioners=directory,
                cfg=cfg.enrich,
            ).events
            out.append(label_events(events, labels).collect())
    return out


def split(plan: pl.DataFrame, day: pl.DataFrame, earlier: pl.DataFrame) -> pl.DataFrame:
    """Next-day stuffing attempts by target and source kind: attempts, stopped by ``plan``."""
    from detector.recommend.replay import _prepare, plan_refusals

    prepared = _prepare(day)
    refused = plan_refusals(plan, prepared)
    logins = (
        day.with_row_index("_r")
        .filter(pl.col("action") == "login")
        .sort("timestamp", "_r")
        .with_row_index("_i")
        .join(refused, on="_i")
        .filter(pl.col("label_technique") == STUFFING)
        .with_columns(pl.col("account").str.to_lowercase())
    )
    return (
        logins.with_columns(
            pl.when(pl.col("outcome") == "unknown_user")
            .then(pl.lit("unknown name"))
            .when(pl.col("account").is_in(earlier.get_column("account").implode()))
            .then(pl.lit("account tried before"))
            .otherwise(pl.lit("account new to the list"))
            .alias("target"),
            pl.when(pl.col("source_ip").is_in(earlier.get_column("source_ip").implode()))
            .then(pl.lit("proxy used before"))
            .otherwise(pl.lit("new proxy"))
            .alias("source"),
        )
        .group_by("target", "source")
        .agg(pl.len().alias("attempts"), (pl.col("refused") | pl.col("reset")).sum().alias("stopped"))
    )


def main(argv: list[str] | None = None) -> int:
    import plan_quality

    from detector.config import load
    from detector.pipeline import default_model_path
    from detector.score import load_model
    from detector.simulate import simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--mix", choices=("fixed", "drawn"), default="drawn")
    ap.add_argument("--config", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = load(args.config)
    model = load_model(default_model_path())
    with tempfile.TemporaryDirectory(prefix="stuffing-world-") as tmp:
        world = Path(tmp) / "world"
        simulate(world, accounts=args.accounts, days=args.days, seed=args.seed, mix=args.mix)
        plans, _ = plan_quality.run_world(world, list(range(1, args.days)), cfg, model, Path(tmp))
        days = stuffing_attempts(world, cfg)
    cs = [d.filter(pl.col("label_technique") == STUFFING).select("account", "source_ip") for d in days]
    cs = [d.with_columns(pl.col("account").str.to_lowercase()) for d in cs]
    parts = [split(plans[n], days[n], pl.concat(cs[:n])) for n in sorted(plans)]
    table = (
        pl.concat(parts)
        .group_by("target", "source")
        .agg(pl.col("attempts", "stopped").sum())
        .with_columns(
            (100 * pl.col("attempts") / pl.col("attempts").sum()).round(1).alias("share_pct"),
            (100 * pl.col("stopped") / pl.col("attempts")).round(1).alias("stopped_pct"),
        )
        .sort("target", "source")
    )
    with pl.Config(tbl_rows=20, tbl_hide_dataframe_shape=True):
        print(f"seed {args.seed} ({args.mix} mix), next-day credential stuffing attempts, day pairs summed:")
        print(table)
    print(json.dumps({"seed": args.seed, "split": table.to_dicts()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
