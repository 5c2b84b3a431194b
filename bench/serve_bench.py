"""Benchmark of ``detector serve`` (``make serve-bench``): latency at a fixed request rate. Not a test.

    .venv/bin/python bench/serve_bench.py                      # 2,000 requests/s, 100,000 measures, 20 s
    .venv/bin/python bench/serve_bench.py --rate 4000 --seconds 30

The service runs as ``detector serve`` in its own process (as deployed); the load comes from a
client process that sends Dovecot auth policy requests *open-loop*: request i is due at
``start + i / rate`` whatever happened to the earlier ones, and its latency counts from when it
was due, so a stalled service cannot hide its backlog (no coordinated omission). The client keeps
``--connections`` keep-alive connections, like Dovecot's HTTP client; 70% of the requests are
``allow`` and 30% ``report`` (one report per login attempt, as Dovecot sends them), over random
accounts and addresses of which a share hit the plan's measures. Prints the latency percentiles,
the rate achieved, the service's CPU and the machine's load (``os.getloadavg``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DETECTOR = ROOT / ".venv" / "bin" / "detector"


def make_plan(path: Path, measures: int, seed: int) -> dict[str, list[str]]:
    """A plan of ``measures`` rows (blocks of addresses, /24s and /64s, restrictions, resets,
    locks) and samples of what it names, for the client to hit."""
    import polars as pl

    from detector.schema import RECOMMENDATION_SCHEMA

    rng = random.Random(seed)
    expires = datetime.now(UTC) + timedelta(days=2)
    rows = []
    names: dict[str, list[str]] = {"blocked_ip": [], "restricted": [], "reset": []}
    for i in range(measures):
        kind = rng.random()
        row = {
            "measure_id": f"M{i:012x}",
            "services": [],
            "allowed_networks": None,
            "wave": None,
            "expires_at": expires,
            "risk_score": 0.9,
            "confidence": 0.9,
            "reason": "bench",
            "techniques": [],
            "evidence": "{}",
            "collateral_accounts": 0,
            "collateral_practitioners": 0,
        }
        if kind < 0.45:
            ip = f"{rng.randint(11, 99)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            row.update(action="block", target_type="ip", target=ip, services=["imap", "smtp", "submission"])
            names["blocked_ip"].append(ip)
        elif kind < 0.55:
            row.update(
                action="block",
                target_type="cidr",
                target=f"{rng.randint(11, 99)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24",
            )
        elif kind < 0.58:
            row.update(
                action="block",
                target_type="cidr",
                target=f"2001:db8:{rng.randint(0, 65535):x}:{rng.randint(0, 65535):x}::/64",
            )
        elif kind < 0.97:
            account = f"user{i}@example.org"
            nets = [
                f"{rng.randint(11, 99)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24" for _ in range(3)
            ]
            row.update(
                action="restrict_account",
                target_type="account",
                target=account,
                allowed_networks=[*nets, "AS3215"],
            )
            names["restricted"].append(account)
        elif kind < 0.99:
            account = f"user{i}@example.org"
            row.update(action="reset_credentials", target_type="account", target=account, expires_at=None)
            names["reset"].append(account)
        else:
            row.update(action="lock_account", target_type="account", target=f"user{i}@example.org")
        rows.append(row)
    pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA).write_parquet(path)
    return names


def requests(names: dict[str, list[str]], n: int, seed: int) -> list[bytes]:
    """``n`` HTTP requests, ready to send."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        ip = (
            rng.choice(names["blocked_ip"])
            if r < 0.1
            else f"100.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        )
        pick = rng.random()
        account = (
            rng.choice(names["restricted"])
            if pick < 0.3
            else rng.choice(names["reset"])
            if pick < 0.35
            else f"other{rng.randint(0, 10**6)}@example.org"
        )
        doc = {
            "login": account,
            "pwhash": f"{rng.getrandbits(12):03x}",
            "remote": ip,
            "protocol": "imap",
            "session_id": "bench",
        }
        command = "allow"
        if rng.random() < 0.3:
            command = "report"
            doc.update(success=rng.random() < 0.5, policy_reject=False)
        body = json.dumps(doc).encode()
        head = (
            f"POST /?command={command} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


async def _read_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


async def drive(
    port: int, reqs: list[bytes], rate: float, connections: int
) -> tuple[list[float], float, int]:
    """Send ``reqs`` open-loop at ``rate``; the latencies (s, from when each was due), the wall time, errors."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    free: asyncio.Queue = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.1

    async def one(i: int, data: bytes) -> None:
        nonlocal errors
        due = start + i / rate
        reader, writer = await free.get()
        try:
            writer.write(data)
            await _read_response(reader)
            latencies.append(time.perf_counter() - due)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            free.put_nowait((reader, writer))

    tasks = []
    for i, data in enumerate(reqs):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, data)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for _, w in conns:
        w.close()
    return latencies, wall, errors


def handler_cpu(plan: Path, reqs: list[bytes]) -> float:
    """CPU seconds per request of the service's request handling alone (HTTP head parsing, JSON,
    validation, decision, metrics), in this process without the network: what the service costs
    whatever the machine's load."""
    import logging

    from detector.serve.service import ServeOptions, Service
    from detector.serve.wire import HttpRequest, parse_head

    logging.getLogger("detector").disabled = True
    service = Service(ServeOptions(plan=plan, dovecot_listen=("127.0.0.1", 0)))
    split = [r.split(b"\r\n\r\n", 1) for r in reqs]
    started = time.process_time()
    for head, body in split:
        parsed = parse_head(head + b"\r\n\r\n")
        assert parsed is not None
        service.handle_http(HttpRequest(*parsed, body))
    return (time.process_time() - started) / len(split)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="requests per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the measured run")
    ap.add_argument("--measures", type=int, default=100_000, help="measures in the plan")
    ap.add_argument(
        "--connections", type=int, default=32, help="keep-alive connections (Dovecot's parallelism)"
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        plan = Path(tmp) / "recommendations.parquet"
        t = time.perf_counter()
        names = make_plan(plan, args.measures, args.seed)
        print(f"plan: {args.measures:,} measures written in {time.perf_counter() - t:.1f} s")
        port = free_port()
        load_before = os.getloadavg()
        proc = subprocess.Popen(
            [str(DETECTOR), "serve", "--plan", str(plan), "--dovecot-listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            t = time.perf_counter()
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.perf_counter() - t > 60:
                        print("the service did not start", file=sys.stderr)
                        return 1
                    time.sleep(0.05)
            print(f"service up in {time.perf_counter() - t:.1f} s (import, plan load and index)")
            warm = requests(names, int(args.rate * 2), args.seed + 1)
            asyncio.run(drive(port, warm, args.rate, args.connections))
            reqs = requests(names, int(args.rate * args.seconds), args.seed + 2)
            cpu0, client0 = _cpu_seconds(proc.pid), time.process_time()
            latencies, wall, errors = asyncio.run(drive(port, reqs, args.rate, args.connections))
            cpu, client = _cpu_seconds(proc.pid) - cpu0, time.process_time() - client0
        finally:
            proc.terminate()
            proc.wait(10)
        per_request = handler_cpu(plan, reqs[:20000])
    lat = sorted(latencies)
    ms = {q: percentile(lat, q) * 1000 for q in (0.5, 0.9, 0.99, 0.999)}
    print(
        f"requests: {len(reqs):,} at {args.rate:,.0f}/s over {args.connections} connections; "
        f"achieved {len(lat) / wall:,.0f}/s; errors {errors}"
    )
    print(
        f"latency ms: p50 {ms[0.5]:.2f}  p90 {ms[0.9]:.2f}  p99 {ms[0.99]:.2f}  p99.9 {ms[0.999]:.2f}  "
        f"max {lat[-1] * 1000:.1f}"
    )
    print(
        f"service CPU: {cpu:.1f} s over {wall:.1f} s ({100 * cpu / wall:.0f}% of one core, "
        f"{1e6 * cpu / len(reqs):.0f} us a request); client CPU {client:.1f} s"
    )
    print(f"request handling alone (in process, no network): {per_request * 1e6:.0f} us CPU a request")
    print(
        f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
