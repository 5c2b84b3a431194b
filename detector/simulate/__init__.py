"""A labelled, reproducible mail world: logs, practitioner directory, GeoIP databases and incidents.

``simulate(out_dir, ...)`` writes::

    out_dir/logs/<YYYY-MM-DD>/imap1-mail.log       Dovecot, RFC 3164, UTC
    out_dir/logs/<YYYY-MM-DD>/imap2-mail.log.gz    Dovecot, rsyslog ISO 8601 (Paris time), gzip
    out_dir/logs/<YYYY-MM-DD>/smtp1-mail.log       Postfix submission + Dovecot SASL, RFC 3164, UTC
    out_dir/practitioners.csv                      account, profession, rpps, organization
    out_dir/geoip/*.mmdb, address-plan.csv         the invented address plan
    out_dir/labels/incidents.csv                   ground truth (docs/labels.md)
    out_dir/manifest.json                          seed, parameters, counts per behaviour

The same parameters give the same bytes: every draw comes from one seeded generator, times are
fixed from ``start``, outputs are sorted and gzip headers carry no time or name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from detector.errors import InputError
from detector.simulate import attacks, benign, plan, population, render, truth
from detector.simulate.mix import AttackMix, resolve
from detector.simulate.sessions import US, day_start

GENERATOR_VERSION = "1"
DEFAULT_START = dt.date(2026, 11, 16)


@dataclass(frozen=True)
class SimulationResult:
    out_dir: Path
    accounts: int
    days: int
    seed: int
    lines: int
    sessions: int
    label_rows: int
    compromised_accounts: int
    seconds: float
    warnings: tuple[str, ...] = field(default=())
    mix: AttackMix = field(default_factory=AttackMix)

    def summary_text(self) -> str:
        text = (
            f"world written to {self.out_dir}: {self.accounts} accounts, {self.days} days, seed {self.seed}; "
            f"{self.sessions} sessions, {self.lines} log lines, {self.label_rows} label rows, "
            f"{self.compromised_accounts} compromised accounts ({self.seconds:.1f} s)"
        )
        if self.mix.drawn:
            text += f"; attack mix drawn from the seed (scale {self.mix.scale}x, see manifest.json)"
        return "\n".join([text, *(f"warning: {w}" for w in self.warnings)])


def _check(accounts: int, days: int, practitioner_share: float) -> None:
    if accounts < 50:
        raise InputError(f"--accounts must be at least 50, got {accounts}")
    if not 1 <= days <= 60:
        raise InputError(f"--days must be between 1 and 60, got {days}")
    if not 0.0 <= practitioner_share <= 1.0:
        raise InputError(f"--practitioner-share must be between 0 and 1, got {practitioner_share}")


def _ts_text(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Datetime("us", "UTC")).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


LABELS_README = """\
# incidents.csv

Ground truth of this simulated world, one row per labelled fact:
`campaign, technique, source_ip, account, start, end, compromised`.

An event is an attack event when some row's non-empty fields (source_ip, account) all match it
and its timestamp lies in [start, end]. Rows with an empty account are the attacker's own
addresses; rows with both an address and an account are shared addresses (VPN exits, CGNAT
gateways, households) where only that account's events are attacks; account_takeover rows mark
logins by the attacker into accounts whose password it holds (compromised = true).

Full description: docs/labels.md in the detector repository. `detector train --labels` and
`detector evaluate --labels` read this format.

legit-behaviours.csv lists, per account, the legitimate behaviours it shows (`account, behaviour,
sessions, sources`): the look-alike populations that must never be judged compromised.
"""


def legit_behaviours(sessions: pl.DataFrame) -> pl.DataFrame:
    """One row per account and legitimate behaviour: who the look-alike populations are.

    Lets an evaluation check that the stale-password devices, typos, travellers, CGNAT and NAT
    users and the others are never judged compromised, without guessing them from the logs.
    """
    return (
        sessions.filter(pl.col("campaign").is_null())
        .group_by("account", "behaviour")
        .agg(sessions=pl.len(), sources=pl.col("ip").n_unique())
        .sort("behaviour", "account")
    )


def write_labels(labels: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "README.md").write_text(LABELS_README)
    labels.select(
        "campaign",
        "technique",
        "source_ip",
        "account",
        _ts_text("start").alias("start"),
        _ts_text("end").alias("end"),
        pl.when(pl.col("compromised")).then(pl.lit("true")).otherwise(pl.lit("false")).alias("compromised"),
    ).write_csv(path, line_terminator="\n")


def _geoip(out: Path, pop: population.Population, start: dt.date, proxies: list[str]) -> list[str]:
    nets = plan.networks(pop.hospitals, pop.clinics)
    nets += plan.flagged_proxies(nets, proxies)
    out.mkdir(parents=True, exist_ok=True)
    rows = [dataclasses.asdict(n) for n in nets]
    pl.DataFrame(rows).write_csv(out / "address-plan.csv", line_terminator="\n")
    try:
        from detector.simulate import geodb
    except ImportError:
        return [
            "detector.simulate.geodb is not available yet: no .mmdb files written (address-plan.csv only)"
        ]
    names = {f.name for f in dataclasses.fields(geodb.NetworkInfo)}
    infos = [geodb.NetworkInfo(**{k: v for k, v in row.items() if k in names}) for row in rows]
    geodb.write_geoip_databases(out, infos, day_start(start, 0) // US)
    return []


def _known_proxies(rng: np.random.Generator, sessions: pl.DataFrame) -> list[str]:
    """The residential proxies threat intelligence knows about: about two in five of those used.

    Some are CGNAT gateways of mobile carriers, flagged although legitimate phones share them.
    """
    used = (
        sessions.filter(pl.col("behaviour") == "credential_stuffing")
        .select(pl.col("ip").unique().sort())["ip"]
        .to_list()
    )
    keep = rng.random(len(used)) < 0.4
    return [ip for ip, k in zip(used, keep, strict=True) if k]


@dataclass(frozen=True)
class World:
    """Everything generated before rendering; ``rng`` goes on drawing for the renderer."""

    rng: np.random.Generator
    population: population.Population
    life: benign.LifeEvents
    sessions: pl.DataFrame
    """One row per connection (``detector.simulate.sessions.SESSION_SCHEMA``), attacks included."""
    labels: pl.DataFrame
    """Incidents rows, ``start``/``end`` as UTC microseconds."""
    compromises: list[attacks.Compromise]
    dropped: int
    """Legitimate sessions left out because an (address, account) label row would have covered them."""
    mix: AttackMix = field(default_factory=AttackMix)


def build_world(
    accounts: int = 3000,
    days: int = 3,
    seed: int = 7,
    practitioner_share: float = 0.35,
    start: dt.date = DEFAULT_START,
    mix: str | AttackMix = "fixed",
) -> World:
    """Draw the population, its legitimate sessions, the campaigns and the labels (nothing written).

    ``mix``: ``"fixed"`` (the attack mix of generator version 1, the default so that existing
    worlds keep their bytes), ``"drawn"`` (drawn from the seed, ``AttackMix.draw``) or a mix.
    """
    _check(accounts, days, practitioner_share)
    attack_mix = resolve(mix, seed)
    rng = np.random.default_rng(seed)
    pop = population.build(rng, accounts, practitioner_share)
    life = benign.life_events(rng, pop, start, days)
    legit = benign.generate(rng, pop, life, start, days)
    attack, wins = attacks.generate(rng, pop, life, start, days, attack_mix)
    sessions = pl.concat([legit, attack])
    labels = truth.derive_labels(sessions)
    clash = truth.conflicts(sessions, labels)
    return World(rng, pop, life, sessions.filter(~clash), labels, wins, int(clash.sum()), attack_mix)


def simulate(
    out_dir: str | Path,
    accounts: int = 3000,
    days: int = 3,
    seed: int = 7,
    practitioner_share: float = 0.35,
    start: dt.date = DEFAULT_START,
    mix: str | AttackMix = "fixed",
) -> SimulationResult:
    """Write a complete labelled world to ``out_dir`` (created; existing files are overwritten)."""
    began = time.perf_counter()
    out = Path(out_dir)
    w = build_world(accounts, days, seed, practitioner_share, start, mix)
    rng, pop, life, sessions, labels, wins = w.rng, w.population, w.life, w.sessions, w.labels, w.compromises

    prepared = render.prepare(rng, sessions)
    parts = [
        *render.dovecot_lines(prepared),
        *render.postfix_lines(prepared, rng),
        render.noise_lines(rng, start, days, prepared),
    ]
    lo, hi = day_start(start, 0), day_start(start, days)
    lines = render.envelope(
        pl.concat([p.cast(render.LINE_SCHEMA) for p in parts]).filter(
            pl.col("ts").is_between(lo, hi, closed="left")
        )
    )
    files = render.write_logs(rng, lines, out / "logs", start, days)

    directory = population.directory(rng, pop)
    out.mkdir(parents=True, exist_ok=True)
    directory.write_csv(out / "practitioners.csv", line_terminator="\n")
    warnings = _geoip(out / "geoip", pop, start, _known_proxies(rng, sessions))
    ours = {(start + dt.timedelta(days=d)).isoformat() for d in range(days)}
    warnings += [
        f"{p} is not part of this world (left by an earlier run?)"
        for p in sorted((out / "logs").iterdir())
        if p.name not in ours
    ]
    write_labels(labels, out / "labels" / "incidents.csv")
    legit_behaviours(sessions).write_csv(out / "labels" / "legit-behaviours.csv", line_terminator="\n")

    compromised = labels.filter(pl.col("compromised"))["account"].n_unique()
    manifest = _manifest(
        seed,
        accounts,
        days,
        practitioner_share,
        start,
        sessions,
        labels,
        files,
        directory,
        life,
        wins,
        w.dropped,
    )
    if w.mix.drawn:  # the fixed mix's manifest keeps the bytes of generator version 1
        manifest["attack_mix"] = w.mix.summary()
    (out / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )
    return SimulationResult(
        out_dir=out,
        accounts=accounts,
        days=days,
        seed=seed,
        lines=sum(files.values()),
        sessions=sessions.height,
        label_rows=labels.height,
        compromised_accounts=compromised,
        seconds=time.perf_counter() - began,
        warnings=tuple(warnings),
        mix=w.mix,
    )


def _manifest(
    seed: int,
    accounts: int,
    days: int,
    share: float,
    start: dt.date,
    sessions: pl.DataFrame,
    labels: pl.DataFrame,
    files: dict[str, int],
    directory: pl.DataFrame,
    life: benign.LifeEvents,
    wins: list[attacks.Compromise],
    dropped: int,
) -> dict[str, object]:
    per_behaviour = (
        sessions.group_by("behaviour")
        .agg(sessions=pl.len(), accounts=pl.col("account").n_unique(), sources=pl.col("ip").n_unique())
        .sort("behaviour")
    )
    campaigns = {}
    for (camp,), g in sessions.filter(pl.col("campaign").is_not_null()).group_by(
        ["campaign"], maintain_order=False
    ):
        g = g.with_columns(day=(pl.col("ts") - day_start(start, 0)) // (86400 * US))
        by_day = g.group_by("day").agg(pl.col("ip").unique().alias("ips")).sort("day")
        seen: set[str] = set()
        daily = []
        for day, ips in zip(by_day["day"], by_day["ips"], strict=True):
            today = set(ips)
            daily.append({"day": int(day), "sources": len(today), "new_sources": len(today - seen)})
            seen |= today
        campaigns[str(camp)] = {
            "techniques": sorted(g["technique"].unique().to_list()),
            "sessions": g.height,
            "accounts": g["account"].n_unique(),
            "sources": g["ip"].n_unique(),
            "per_day": daily,
        }
    return {
        "generator": "detector simulate",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "parameters": {
            "accounts": accounts,
            "days": days,
            "practitioner_share": share,
            "start": start.isoformat(),
        },
        "behaviours": {
            r["behaviour"]: {"sessions": r["sessions"], "accounts": r["accounts"], "sources": r["sources"]}
            for r in per_behaviour.iter_rows(named=True)
        },
        "people": {
            "practitioners": directory.height,
            "travellers": int(life.traveller.sum()),
            "movers": int(life.mover.sum()),
            "stale_password_devices": int(life.stale.sum()),
        },
        "campaigns": campaigns,
        "compromises": [
            {
                "account": w.account,
                "campaign": w.campaign,
                "at": dt.datetime.fromtimestamp(w.ts / US, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for w in sorted(wins, key=lambda w: (w.ts, w.account))
        ],
        "labels": {
            "rows": labels.height,
            "per_technique": dict(sorted(labels.group_by("technique").len().iter_rows())),
            "compromised_accounts": labels.filter(pl.col("compromised"))["account"].n_unique(),
            "legit_sessions_dropped_for_exact_labels": dropped,
        },
        "files": dict(sorted(files.items())),
    }
