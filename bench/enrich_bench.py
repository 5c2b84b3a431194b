"""Enrichment cost per million events and per distinct address (not a test).

Builds synthetic events (successful and failed logins, 85 % IPv4 / 15 % IPv6 addresses drawn from
a pool of distinct addresses), GeoIP databases for the address plan (written with
``detector.simulate.geodb``, or real ones with ``--geoip-dir``) and a practitioner directory,
then times ``enrich`` up to a collected frame.

    .venv/bin/python bench/enrich_bench.py --events 1000000 --distinct 5000 50000 200000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from detector.config import EnrichConfig
from detector.enrich import enrich, find_databases, lookup_addresses
from detector.schema import EVENT_SCHEMA, C, conform
from detector.simulate.geodb import NetworkInfo, write_geoip_databases

ACCOUNTS = 100_000


def networks(n24: int, n48: int, rng: random.Random) -> list[NetworkInfo]:
    nets = []
    for i in range(n24):
        a, b = divmod(i, 256)
        nets.append(
            NetworkInfo(
                f"{20 + a % 180}.{b}.{rng.randrange(256)}.0/24",
                rng.choice(["FR", "FR", "FR", "BE", "DE", "US", "NL"]),
                rng.choice(["Paris", "Lyon", "Lille", None]),
                rng.uniform(42, 51),
                rng.uniform(-4, 8),
                64500 + i % 900,
                f"AS {i % 900}",
                is_hosting=i % 17 == 0,
                is_vpn=i % 53 == 0,
                is_tor=i % 211 == 0,
            )
        )
    nets += [
        NetworkInfo(f"2a01:{i:x}:{i % 7:x}::/48", "FR", "Paris", 48.85, 2.35, 3215, "Orange")
        for i in range(1, n48 + 1)
    ]
    return list({n.cidr: n for n in nets}.values())


def address_pool(nets: list[NetworkInfo], distinct: int, rng: random.Random) -> list[str]:
    v4 = [n.cidr.rsplit(".", 1)[0] for n in nets if ":" not in n.cidr]
    v6 = [n.cidr.split("::")[0] for n in nets if ":" in n.cidr]
    pool: set[str] = set()
    while len(pool) < distinct:
        if rng.random() < 0.85:
            pool.add(f"{rng.choice(v4)}.{rng.randrange(1, 255)}")
        else:
            pool.add(
                f"{rng.choice(v6)}:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
            )
    return sorted(pool)


def make_events(n: int, pool: list[str], seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            C.TIMESTAMP: [start + timedelta(seconds=i * 0.08) for i in range(n)],
            C.ACTION: ["login"] * n,
            C.OUTCOME: rng.choices(["success", "failure", "unknown_user"], weights=[70, 25, 5], k=n),
            C.ACCOUNT: [f"user{rng.randrange(ACCOUNTS)}@example.fr" for _ in range(n)],
            C.SOURCE_IP: rng.choices(pool, k=n),
        }
    )
    return conform(frame.lazy(), EVENT_SCHEMA).collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, nargs="+", default=[5_000, 50_000, 200_000])
    parser.add_argument("--geoip-dir", help="use these databases instead of writing synthetic ones")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(1)
    nets = networks(4000, 400, rng)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        geo_dir = args.geoip_dir or write_geoip_databases(Path(tmp), nets, 1_700_000_000)["city"].parent
        if not args.geoip_dir:
            print(f"wrote databases for {len(nets)} networks in {time.perf_counter() - t:.2f} s")
        dbs = find_databases(geo_dir)
        directory = pl.DataFrame(
            {C.ACCOUNT: [f"USER{i}@example.fr" for i in range(0, ACCOUNTS, 20)], C.PROFESSION: "médecin"}
        )
        print(
            "| events | distinct addresses | scan s | lookup s | lookup CPU µs per address | total s (wall) | total CPU s (all threads) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for distinct in args.distinct:
            pool = address_pool(nets, distinct, rng)
            events = make_events(args.events, pool, seed=distinct)
            c0 = time.process_time()
            lookup_addresses(pool, dbs)
            lookup_cpu = time.process_time() - c0
            best: tuple[float, float, float, float] | None = None
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                result = enrich(events.lazy(), geoip=dbs, practitioners=directory, cfg=EnrichConfig())
                out = result.events.collect()
                total, cpu = time.perf_counter() - t0, time.process_time() - c0
                secs = result.metadata["seconds"]
                if best is None or total < best[2]:
                    best = (secs["scan"], secs["lookup"], total, cpu)
            assert best is not None and out.height == args.events
            scan, lookup, total, cpu = best
            per_addr = lookup_cpu / distinct * 1e6
            print(
                f"| {args.events:,} | {distinct:,} | {scan:.2f} | {lookup:.2f} | {per_addr:.1f} | "
                f"{total:.2f} | {cpu:.2f} |"
            )


if __name__ == "__main__":
    main()
