"""Attack campaigns over several days, and the account takeovers that follow each success.

Every attack session carries its campaign and technique; ``compromised`` marks logins by the
attacker into an account whose password it holds (the successful guess and the takeover after it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from detector.simulate import plan
from detector.simulate.benign import LifeEvents
from detector.simulate.mix import FIXED, TAKEOVER_INFRA, AttackMix
from detector.simulate.population import DOMAIN, GENERIC_LOCALS, Population, _names
from detector.simulate.sessions import (
    DAY,
    HOUR,
    MINUTE,
    US,
    conform,
    day_start,
    frame,
    password_hash,
    random_hashes,
)

STUFFING, SPRAYING, BRUTE, DISTRIBUTED, TAKEOVER = (
    "credential_stuffing",
    "password_spraying",
    "brute_force",
    "distributed_brute_force",
    "account_takeover",
)
SPRAY_PASSWORDS = ("Printemps2026!", "Azerty123", "Motdepasse1!", "Sante2026", "Bonjour123", "Soleil2026")

_ISP_BASE = np.array([plan.v4int(i.v4_base) for i in plan.ISPS], dtype=np.int64)


@dataclass(frozen=True)
class Compromise:
    account: str
    city: int
    ts: int
    campaign: str


def _domestic_other(rng: np.random.Generator, k: int, city: np.ndarray | None = None) -> np.ndarray:
    """Addresses of domestic ISP customers who are not account holders (infected or proxy hosts)."""
    isp = rng.choice(len(plan.ISPS), k, p=np.array(plan.ISP_SHARE))
    if city is None:
        w = np.array([c.weight for c in plan.DOMESTIC_CITIES])
        city = rng.choice(len(w), k, p=w / w.sum())
    off = rng.integers(1, plan.CITY_BLOCK - plan.HOUSEHOLD_SPAN - 1, k)
    return _ISP_BASE[isp] + city * plan.CITY_BLOCK + plan.HOUSEHOLD_SPAN + off


def _foreign(rng: np.random.Generator, k: int) -> np.ndarray:
    return plan.foreign_base(rng.integers(0, len(plan.FOREIGN_CITIES), k)) + rng.integers(256, 65000, k)


def _cgnat(rng: np.random.Generator, k: int, gateways: np.ndarray) -> np.ndarray:
    carrier = rng.choice(len(plan.CARRIERS), k, p=np.array(plan.CARRIER_SHARE))
    return plan.cgnat_gateway(carrier, rng.integers(0, 1 << 30, k) % gateways[carrier])


def _residential_pool(
    rng: np.random.Generator,
    k: int,
    life: LifeEvents,
    pop: Population,
    domestic: float,
    mobile: float,
    shared: float = 0.0,
) -> np.ndarray:
    """A residential proxy (or bot) pool: foreign homes, domestic homes and phones behind CGNAT.

    A ``shared`` share sits on addresses legitimate users also use: half on account holders' own
    home lines (a proxy SDK in a household's app, an infected router), half on the VPN's exits.
    """
    u = rng.random(k)
    homes = pop.home_v4[rng.integers(0, pop.size, k)]
    exits = plan.vpn_exit(0, 0) + (rng.integers(0, len(plan.VPN_LOCATIONS), k) << 8) + rng.integers(0, 4, k)
    return np.select(
        [
            u < mobile,
            u < mobile + domestic,
            u < mobile + domestic + shared / 2,
            u < mobile + domestic + shared,
        ],
        [_cgnat(rng, k, life.gateways), _domestic_other(rng, k), homes, exits],
        _foreign(rng, k),
    )


def _renew(rng: np.random.Generator, pool: np.ndarray, keep: float, fresh: np.ndarray) -> np.ndarray:
    """Next day's pool: a share of yesterday's addresses, the rest new."""
    kept = rng.random(len(pool)) < keep
    return np.where(kept, pool, fresh[: len(pool)])


def _windows(
    rng: np.random.Generator, k: int, start: dt.date, day: int, bursts: int, mix: AttackMix = FIXED
) -> np.ndarray:
    """``k`` times inside a few bursts of one to three hours on that day (attackers ignore local time).

    A drawn mix may start bursts late in the evening (running over midnight into the next day) and
    spread a share of the tries evenly over the whole day (low and slow).
    """
    lo, hi = (int(h * HOUR) for h in mix.burst_hours)
    begin = rng.integers(0, 24 * HOUR - hi, bursts)
    length = rng.integers(lo, hi, bursts)
    if mix.drawn:
        late = rng.random(bursts) < mix.midnight
        begin = np.where(late, rng.integers(22 * HOUR, 24 * HOUR, bursts), begin)
    which = rng.integers(0, bursts, k)
    ts = day_start(start, day) + begin[which] + (rng.random(k) * length[which]).astype(np.int64)
    if mix.drawn and mix.low_and_slow:
        slow = rng.random(k) < mix.low_and_slow
        ts = np.where(slow, day_start(start, day) + rng.integers(0, DAY, k), ts)
    return ts


def _unknown_accounts(rng: np.random.Generator, k: int, known: set[str]) -> np.ndarray:
    names = _names(rng, k + k // 4 + 16)
    generic = np.array([f"{g}@{DOMAIN}" for g in GENERIC_LOCALS], dtype=object)
    pool = np.concatenate([generic, names])
    pool = pool[~np.isin(pool, np.array(sorted(known), dtype=object))]
    return np.unique(pool)[rng.permutation(len(np.unique(pool)))][:k]


def _unless(ok: np.ndarray, hashes: pl.Series) -> pl.Series:
    """Password hashes of the failed tries (a success logs none)."""
    return pl.select(pl.when(pl.Series(ok)).then(None).otherwise(hashes.cast(pl.String))).to_series()


def _service(rng: np.random.Generator, k: int, smtp_share: float) -> tuple[np.ndarray, np.ndarray]:
    smtp = rng.random(k) < smtp_share
    method = np.where(smtp | (rng.random(k) < 0.3), "LOGIN", "PLAIN")
    return np.where(smtp, "submission", "imap"), method


def credential_stuffing(
    rng: np.random.Generator,
    pop: Population,
    life: LifeEvents,
    start: dt.date,
    days: int,
    campaign: str = "CS-1",
    mix: AttackMix = FIXED,
) -> tuple[pl.DataFrame, list[Compromise]]:
    """A leaked combo list tried once per credential from residential proxies, in bursts, over the days."""
    n = pop.size
    if not mix.drawn:
        n_real = max(20, n // 10)
        real = rng.choice(n, n_real, replace=False)
    else:
        n_real = min(n, max(20, int(n * min(0.9, mix.stuffing_list * mix.scale))))
        weight = np.where(pop.is_practitioner, mix.practitioner_bias, 1.0)
        real = rng.choice(n, n_real, replace=False, p=weight / weight.sum())
    unknown = _unknown_accounts(rng, int(n_real * mix.stuffing_unknown), set(pop.account))
    accounts = np.concatenate([pop.account[real], unknown])
    is_real = np.concatenate([np.ones(n_real, bool), np.zeros(len(unknown), bool)])
    valid = is_real & (rng.random(len(accounts)) < mix.stuffing_valid)
    if not valid.any():
        valid[0] = True
    hashes = random_hashes(rng, len(accounts))
    order = rng.permutation(len(accounts))
    chunk = np.array_split(order, days)
    if mix.drawn:
        n_proxies = max(40, int(len(accounts) * mix.proxies_per_try / days))
    else:
        n_proxies = max(40, len(accounts) // (2 * days))
    shares = (mix.proxy_domestic, mix.proxy_mobile, mix.proxy_shared)
    pool = _residential_pool(rng, n_proxies, life, pop, *shares)
    city_of = np.concatenate([pop.city[real], np.zeros(len(unknown), int)])
    parts, wins = [], []
    real_idx = {a: i for i, a in enumerate(pop.account)}
    for d in range(days):
        if d:
            pool = _renew(rng, pool, mix.proxy_keep, _residential_pool(rng, n_proxies, life, pop, *shares))
        # Today's share of the list, plus a retry of some earlier entries from other proxies.
        todo = chunk[d]
        if d:
            retries = len(chunk[d]) // 5 if not mix.drawn else int(len(chunk[d]) * mix.retry)
            todo = np.concatenate([todo, rng.choice(np.concatenate(chunk[:d]), retries)])
        todo = todo[~valid[todo] | ~np.isin(todo, np.concatenate(chunk[:d]) if d else np.zeros(0, int))]
        k = len(todo)
        ts = _windows(rng, k, start, d, mix.bursts, mix)
        ok = valid[todo]
        service, method = _service(rng, k, 0.2)
        ip = pool[rng.integers(0, n_proxies, k)]
        if mix.drawn:
            # Past the last day, a burst over midnight wraps to the same evening; some tries come
            # from a home in the victim's own city (a proxy chosen for its location).
            ts = np.where(ts >= day_start(start, days), ts - DAY, ts)
            near = is_real[todo] & (rng.random(k) < mix.proxy_same_city)
            ip = np.where(near, _domestic_other(rng, k, city_of[todo]), ip)
        service = np.where(ok, "imap", service)
        outcome = np.where(ok, "success", np.where(is_real[todo], "failure", "unknown_user"))
        parts.append(
            frame(
                k,
                ts=ts,
                account=accounts[todo].astype(str),
                ip=plan.v4_text(ip),
                service=service,
                outcome=outcome,
                attempts=np.where(ok, 0, 1).astype(np.int32),
                method=method,
                duration=np.where(ok, rng.integers(20 * US, 90 * US, k), rng.integers(2 * US, 4 * US, k)),
                bytes_in=np.where(ok, rng.integers(60, 300, k), 0),
                bytes_out=np.where(ok, rng.integers(600, 5000, k), 0),
                pw_hash=_unless(ok, hashes.gather(pl.Series(todo))),
                behaviour="credential_stuffing",
                campaign=campaign,
                technique=STUFFING,
                compromised=ok,
            )
        )
        for i, t in zip(todo[ok], ts[ok], strict=True):
            wins.append(Compromise(str(accounts[i]), int(pop.city[real_idx[accounts[i]]]), int(t), campaign))
    return pl.concat(parts), wins


def password_spraying(
    rng: np.random.Generator,
    pop: Population,
    start: dt.date,
    days: int,
    campaign: str = "PS-1",
    mix: AttackMix = FIXED,
) -> tuple[pl.DataFrame, list[Compromise]]:
    """One common password a day against most accounts, slowly, from a few hosting /24s."""
    n = pop.size
    reach = mix.spray_reach if not mix.drawn else min(0.95, mix.spray_reach * mix.scale)
    real = np.flatnonzero(rng.random(n) < reach)
    unknown = _unknown_accounts(rng, max(10, n // 12), set(pop.account))
    accounts = np.concatenate([pop.account[real], unknown])
    is_real = np.concatenate([np.ones(len(real), bool), np.zeros(len(unknown), bool)])
    city_of = np.concatenate([pop.city[real], np.zeros(len(unknown), int)])
    subnets = [(0, 3), (1, 5), (3, 2)]
    per_subnet = mix.spray_hosts
    hosts = rng.integers(2, 250, (len(subnets), per_subnet))
    parts, wins = [], []
    already = np.zeros(len(accounts), bool)
    for d in range(days):
        if d:
            # Half the hosts move within their /24, and one more /24 joins.
            hosts = np.where(rng.random(hosts.shape) < 0.5, hosts, rng.integers(2, 250, hosts.shape))
            if d == 1:
                subnets = [*subnets, (2, 6)]
                hosts = np.vstack([hosts, rng.integers(2, 250, (1, per_subnet))])
        ips = np.array([plan.hosting_base(h, s) for h, s in subnets])[:, None] + hosts
        ips = ips.ravel()
        password = SPRAY_PASSWORDS[d % len(SPRAY_PASSWORDS)]
        order = rng.permutation(len(accounts))
        order = order[~already[order]]
        k = len(order)
        # Slow: spread over twenty hours, each address trying one account every several minutes.
        hours = int(mix.spray_hours * HOUR)
        first = 2 * HOUR if not mix.drawn else int(rng.integers(0, DAY - hours + 1))
        ts = day_start(start, d) + first + np.sort(rng.integers(0, hours, k))
        if mix.drawn:
            ts = np.where(ts >= day_start(start, days), ts - DAY, ts)
        ok = is_real[order] & (rng.random(k) < mix.spray_success)
        if d == 0 and not ok.any():
            ok[np.flatnonzero(is_real[order])[0]] = True
        already[order[ok]] = True
        service, method = _service(rng, k, 0.3)
        service = np.where(ok, "imap", service)
        outcome = np.where(ok, "success", np.where(is_real[order], "failure", "unknown_user"))
        parts.append(
            frame(
                k,
                ts=ts,
                account=accounts[order].astype(str),
                ip=plan.v4_text(ips[np.arange(k) % len(ips)]),
                service=service,
                outcome=outcome,
                attempts=np.where(ok, 0, 1).astype(np.int32),
                method=method,
                duration=np.where(ok, rng.integers(20 * US, 60 * US, k), rng.integers(2 * US, 4 * US, k)),
                bytes_in=np.where(ok, rng.integers(60, 300, k), 0),
                bytes_out=np.where(ok, rng.integers(600, 5000, k), 0),
                pw_hash=_unless(ok, pl.repeat(password_hash(password), k, eager=True)),
                behaviour="password_spraying",
                campaign=campaign,
                technique=SPRAYING,
                compromised=ok,
            )
        )
        for i, t in zip(order[ok], ts[ok], strict=True):
            wins.append(Compromise(str(accounts[i]), int(city_of[i]), int(t), campaign))
    return pl.concat(parts), wins


def brute_force(
    rng: np.random.Generator,
    pop: Population,
    start: dt.date,
    days: int,
    campaign: str = "BF-1",
    mix: AttackMix = FIXED,
) -> tuple[pl.DataFrame, list[Compromise]]:
    """Targeted brute force on a few practitioners, from a hosting address and a VPN exit."""
    practitioners = np.flatnonzero(pop.is_practitioner)
    n_targets = max(2, int(pop.size * (mix.scale if mix.drawn else 1)) // mix.brute_per_accounts)
    targets = rng.choice(practitioners, min(n_targets, len(practitioners)), replace=False)
    vpn = plan.vpn_exit(0, int(rng.integers(0, plan.VPN_EXITS_PER_LOCATION)))
    host = plan.hosting_base(1, 7) + int(rng.integers(2, 250))
    parts, wins = [], []
    winner = targets[0]
    for d in range(days):
        if d:
            host = plan.hosting_base(1, 7) + int(rng.integers(2, 250))
        for t in targets:
            conns = int(rng.integers(*mix.brute_conns))
            ts = day_start(start, d) + np.sort(rng.integers(0, DAY - HOUR, conns))
            attempts = rng.integers(1, 4, conns).astype(np.int32)
            ips = np.where(rng.random(conns) < 0.7, host, vpn)
            ok = np.zeros(conns, bool)
            if t == winner and d == min(1, days - 1):
                ok[-1] = True
                attempts[-1] = 0
            k = conns
            parts.append(
                frame(
                    k,
                    ts=ts,
                    account=str(pop.account[t]),
                    ip=plan.v4_text(ips),
                    service="imap",
                    outcome=np.where(ok, "success", "failure"),
                    attempts=attempts,
                    method="PLAIN",
                    duration=np.where(ok, 40 * US, attempts * rng.integers(2 * US, 4 * US, k)),
                    bytes_in=np.where(ok, 150, 0),
                    bytes_out=np.where(ok, 2400, 0),
                    pw_hash=_unless(ok, random_hashes(rng, k)),
                    behaviour="brute_force",
                    campaign=campaign,
                    technique=BRUTE,
                    compromised=ok,
                )
            )
            if ok.any():
                wins.append(Compromise(str(pop.account[t]), int(pop.city[t]), int(ts[-1]), campaign))
    return pl.concat(parts), wins


def distributed_brute_force(
    rng: np.random.Generator,
    pop: Population,
    life: LifeEvents,
    start: dt.date,
    days: int,
    campaign: str = "DBF-1",
    mix: AttackMix = FIXED,
) -> pl.DataFrame:
    """Thousands of bots, one try each, against a few accounts, all day long."""
    targets = rng.choice(pop.size, max(2, pop.size // 1200), replace=False)
    parts = []
    for d in range(days):
        k = max(300, pop.size // 3 if not mix.drawn else int(pop.size * mix.bots_per_account * mix.scale))
        ips = _residential_pool(rng, k, life, pop, domestic=0.2, mobile=0.08, shared=0.02)
        ts = day_start(start, d) + rng.integers(0, DAY, k)
        service, method = _service(rng, k, 0.25)
        parts.append(
            frame(
                k,
                ts=ts,
                account=pop.account[targets[rng.integers(0, len(targets), k)]].astype(str),
                ip=plan.v4_text(ips),
                service=service,
                outcome="failure",
                attempts=np.ones(k, np.int32),
                method=method,
                duration=rng.integers(2 * US, 4 * US, k),
                pw_hash=random_hashes(rng, k),
                behaviour="distributed_brute_force",
                campaign=campaign,
                technique=DISTRIBUTED,
            )
        )
    return pl.concat(parts)


INFRA = ("hosting", "vpn", "tor")


def _attacker_address(rng: np.random.Generator, infra: str, city: int) -> int:
    if infra == "residential_domestic":
        return int(_domestic_other(rng, 1)[0])
    if infra == "hosting":
        return plan.hosting_base(int(rng.integers(0, 2)), int(rng.integers(0, 3))) + int(rng.integers(2, 250))
    if infra == "vpn":
        loc = int(rng.integers(0, len(plan.VPN_LOCATIONS)))
        return plan.vpn_exit(loc, int(rng.integers(0, plan.VPN_EXITS_PER_LOCATION)))
    if infra == "tor":
        return plan.tor_exit(int(rng.integers(0, plan.TOR_EXITS)))
    return int(_domestic_other(rng, 1, np.array([city]))[0])


def takeover(
    rng: np.random.Generator, wins: list[Compromise], start: dt.date, days: int, mix: AttackMix = FIXED
) -> pl.DataFrame:
    """What the attacker does with each account: logins from its infrastructure, bulk IMAP downloads, SMTP bursts.

    The first victim is entered from a residential proxy in the victim's own city.
    """
    end = day_start(start, days)
    parts = []
    for k, win in enumerate(sorted(wins, key=lambda w: (w.ts, w.account))):
        t0 = win.ts + int(rng.integers(10 * MINUTE, int(mix.takeover_delay_hours * HOUR)))
        span = max(end - HOUR - t0, MINUTE)
        logins = int(rng.integers(*mix.takeover_logins))
        ts = t0 + np.sort(rng.integers(0, min(30 * HOUR, span), logins))
        ts = ts[ts < end - HOUR]
        m = len(ts)
        if m == 0:
            continue
        # The attacker rotates through its infrastructure; one victim is entered from its own city.
        if mix.takeover_infra is None:
            infra = [INFRA[(k + j) % len(INFRA)] for j in range(m)]
            if k == 0:
                infra[0] = "residential_same_city"
        else:
            p = np.array(mix.takeover_infra)
            infra = [str(x) for x in rng.choice(TAKEOVER_INFRA, m, p=p / p.sum())]
        own = {name: _attacker_address(rng, name, win.city) for name in sorted(set(infra))}
        ips = plan.v4_text(np.array([own[name] for name in infra]))
        text = ips[0]
        reads = frame(
            m,
            ts=ts,
            account=win.account,
            ip=ips,
            service="imap",
            outcome="success",
            method="PLAIN",
            duration=rng.integers(10 * MINUTE, 50 * MINUTE, m),
            bytes_in=rng.integers(2_000, 40_000, m),
            bytes_out=np.where(
                np.arange(m) == 0,
                rng.integers(300_000_000, 2_500_000_000, m),
                rng.integers(20_000, 5_000_000, m),
            ),
            behaviour=pl.Series([f"takeover_{name}" for name in infra]),
            campaign=win.campaign,
            technique=TAKEOVER,
            compromised=True,
        )
        bursts = int(rng.integers(1, 3))
        bts = ts[0] + rng.integers(5 * MINUTE, 2 * HOUR, bursts)
        bts = bts[bts < end - HOUR]
        msgs = rng.integers(15, 50, len(bts)).astype(np.int32)
        sends = frame(
            len(bts),
            ts=bts,
            account=win.account,
            ip=text,
            service="submission",
            outcome="success",
            method="LOGIN",
            duration=msgs.astype(np.int64) * rng.integers(1 * US, 3 * US, len(bts)),
            messages=msgs,
            rcpt=rng.integers(20, 90, len(bts)).astype(np.int32),
            msg_size=rng.integers(3_000, 40_000, len(bts)),
            behaviour="takeover_smtp_burst",
            campaign=win.campaign,
            technique=TAKEOVER,
            compromised=True,
        )
        parts += [reads, sends]
    return pl.concat([conform(p) for p in parts]) if parts else frame(0)


def generate(
    rng: np.random.Generator,
    pop: Population,
    life: LifeEvents,
    start: dt.date,
    days: int,
    mix: AttackMix = FIXED,
) -> tuple[pl.DataFrame, list[Compromise]]:
    cs, cs_wins = credential_stuffing(rng, pop, life, start, days, mix=mix)
    ps, ps_wins = password_spraying(rng, pop, start, days, mix=mix)
    bf, bf_wins = brute_force(rng, pop, start, days, mix=mix)
    dbf = distributed_brute_force(rng, pop, life, start, days, mix=mix)
    # An account broken twice is taken over once, by the first campaign that got in.
    first: dict[str, Compromise] = {}
    for w in sorted(cs_wins + ps_wins + bf_wins, key=lambda w: (w.ts, w.account)):
        first.setdefault(w.account, w)
    wins = list(first.values())
    ato = takeover(rng, wins, start, days, mix)
    return pl.concat([conform(p) for p in (cs, ps, bf, dbf, ato)]), wins
