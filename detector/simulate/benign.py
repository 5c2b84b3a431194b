"""Legitimate traffic: daily rhythms, shared addresses and the benign oddities that look like attacks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from detector.simulate import plan
from detector.simulate.population import Population
from detector.simulate.sessions import (
    DAY,
    HOUR,
    MINUTE,
    US,
    conform,
    day_start,
    frame,
    local_hour,
    local_times,
    random_hashes,
    weekday,
)

PHONE_HOURS = np.array([0.3, 0.2, 0.1, 0.1, 0.1, 0.3, 1, 3, 5, 5, 4, 4, 6, 5, 4, 4, 4, 5, 6, 6, 6, 5, 3, 1])
WORK_HOURS = np.array([0, 0, 0, 0, 0, 0, 0, 0.5, 3, 5, 5, 5, 3, 3, 5, 5, 5, 4, 2, 0.5, 0, 0, 0, 0])
HOME_HOURS = np.array([0.3, 0.1, 0, 0, 0, 0, 0.2, 1, 1, 1, 1, 1, 1.5, 1, 1, 1, 1, 1.5, 3, 4, 4, 3, 2, 1])
WEBMAIL_HOURS = np.array([0.1, 0, 0, 0, 0, 0, 0.2, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 0.3])

HOME, CARRIER, WORK, VPN, HOTEL = range(5)
PHONE, DESKTOP, WEBMAIL = range(3)


@dataclass(frozen=True)
class LifeEvents:
    """Who travels, moves house or has a device with a stale password, and when."""

    traveller: np.ndarray  # bool per account
    trip_first: np.ndarray  # first day abroad
    trip_last: np.ndarray
    trip_city: np.ndarray  # index into FOREIGN_CITIES
    mover: np.ndarray
    move_ts: np.ndarray  # microseconds; sessions from then on use the new home
    new_home_v4: np.ndarray
    new_isp: np.ndarray
    stale: np.ndarray
    stale_hash: pl.Series  # per account (meaningful where stale)
    gateways: np.ndarray  # CGNAT gateways in use per carrier
    fetcher_ip: np.ndarray  # a third-party service polling the mailbox from a hosting provider (0: none)
    bulk_sender: np.ndarray  # sends a message to dozens of patients or colleagues on workdays
    fetcher_stale_ts: np.ndarray  # from then on the fetcher polls with a password the user has changed


def life_events(rng: np.random.Generator, pop: Population, start: dt.date, days: int) -> LifeEvents:
    n = pop.size
    order = rng.permutation(n)
    n_trav, n_mov, n_stale = max(2, n // 100), max(2, n // 150), max(2, n // 800)
    eligible = (pop.has_desktop | pop.uses_webmail) & (pop.carrier >= 0)
    cand = order[eligible[order]]
    trav_idx = cand[:n_trav]
    rest = np.setdiff1d(order, trav_idx, assume_unique=True)
    rest = rest[rng.permutation(len(rest))]
    # Movers are active desktop users, so that their new address shows.
    movable = rest[pop.has_desktop[rest] & (pop.activity[rest] > 0.6)]
    mov_idx = movable[:n_mov]
    stale_cand = np.setdiff1d(rest, mov_idx, assume_unique=True)
    stale_cand = stale_cand[rng.permutation(len(stale_cand))]
    stale_idx = stale_cand[pop.has_desktop[stale_cand]][:n_stale]

    traveller = np.zeros(n, dtype=bool)
    traveller[trav_idx] = True
    trip_first = np.full(n, -1)
    trip_first[trav_idx] = rng.integers(0, days, n_trav)
    trip_last = np.full(n, -1)
    trip_last[trav_idx] = np.minimum(trip_first[trav_idx] + rng.integers(0, 3, n_trav), days - 1)
    trip_city = np.zeros(n, dtype=np.int64)
    trip_city[trav_idx] = rng.integers(0, plan.TRAVEL_CITIES, n_trav)

    n_mov = len(mov_idx)
    mover = np.zeros(n, dtype=bool)
    mover[mov_idx] = True
    move_ts = np.full(n, np.iinfo(np.int64).max)
    move_ts[mov_idx] = day_start(start, 0) + rng.integers(0, max(1, days - 1), n_mov) * DAY + 12 * HOUR
    new_isp = pop.isp.copy()
    new_isp[mov_idx] = (pop.isp[mov_idx] + rng.integers(1, len(plan.ISPS), n_mov)) % len(plan.ISPS)
    new_city = pop.city.copy()
    relocate = rng.random(n_mov) < 0.5
    new_city[mov_idx[relocate]] = rng.integers(0, len(plan.DOMESTIC_CITIES), int(relocate.sum()))
    new_home_v4 = pop.home_v4.copy()
    bases = np.array(
        [plan.isp_city_base(int(i), int(c)) for i, c in zip(new_isp[mov_idx], new_city[mov_idx], strict=True)]
    )
    new_home_v4[mov_idx] = (
        bases + plan.HOUSEHOLD_SPAN + rng.integers(1, plan.CITY_BLOCK - plan.HOUSEHOLD_SPAN - 1, n_mov)
    )

    stale = np.zeros(n, dtype=bool)
    stale[stale_idx] = True
    phones = np.bincount(pop.carrier[pop.carrier >= 0], minlength=len(plan.CARRIERS))
    gateways = np.maximum(6, phones // 45)
    # Practice-management or archiving services fetching mail from a datacentre. One of their /24s
    # is also rented by the password sprayers.
    n_fetch = max(2, n // 150)
    fetchers = rng.permutation(np.flatnonzero(~stale & ~traveller & ~mover))[:n_fetch]
    fetcher_ip = np.zeros(n, dtype=np.int64)
    subnet = np.where(np.arange(n_fetch) % 2 == 0, plan.hosting_base(1, 5), plan.hosting_base(2, 1))
    fetcher_ip[fetchers] = subnet + rng.integers(250, 254, n_fetch)  # attackers rent .2 to .249
    # The first fetcher's user changes the password at noon of the last day; the service goes on
    # polling with the old one.
    fetcher_stale_ts = np.full(n, np.iinfo(np.int64).max)
    fetcher_stale_ts[fetchers[:1]] = day_start(start, days - 1) + 12 * HOUR
    bulk_sender = np.zeros(n, dtype=bool)
    senders = np.flatnonzero(pop.is_practitioner & pop.has_desktop & ~stale & ~traveller)
    bulk_sender[rng.permutation(senders)[: max(2, n // 500)]] = True
    return LifeEvents(
        traveller=traveller,
        trip_first=trip_first,
        trip_last=trip_last,
        trip_city=trip_city,
        mover=mover,
        move_ts=move_ts,
        new_home_v4=new_home_v4,
        new_isp=new_isp,
        stale=stale,
        stale_hash=random_hashes(rng, n),
        gateways=gateways,
        fetcher_ip=fetcher_ip,
        bulk_sender=bulk_sender,
        fetcher_stale_ts=fetcher_stale_ts,
    )


def _nat_table(nats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first = np.cumsum([0] + [len(x) for x in nats])[:-1]
    count = np.array([len(x) for x in nats])
    flat = np.concatenate(nats) if nats else np.zeros(0, dtype=np.int64)
    return first, count, flat


def _day(
    rng: np.random.Generator, pop: Population, life: LifeEvents, start: dt.date, day: int
) -> pl.DataFrame:
    n = pop.size
    workday = weekday(start, day) < 5
    on_trip = life.traveller & (life.trip_first <= day) & (day <= life.trip_last)
    active = (rng.random(n) < pop.activity * (1.0 if workday else 0.7)) | on_trip | life.mover

    k_phone = rng.poisson(3.0, n) * (active & (pop.carrier >= 0))
    k_desk = rng.poisson(2.0 if workday else 0.8, n) * (active & pop.has_desktop)
    k_web = rng.poisson(1.0, n) * (active & pop.uses_webmail) + (on_trip & ~pop.has_desktop)
    acct = np.concatenate([np.repeat(np.arange(n), k) for k in (k_phone, k_desk, k_web)])
    device = np.concatenate(
        [np.full(k.sum(), dev) for dev, k in ((PHONE, k_phone), (DESKTOP, k_desk), (WEBMAIL, k_web))]
    )
    m = len(acct)

    works = (pop.workplace_kind[acct] > 0) & workday
    at_work = works & (device != PHONE) & (rng.random(m) < 0.8)
    ts = np.where(
        at_work,
        local_times(rng, WORK_HOURS, m, start, day),
        np.where(
            device == PHONE,
            local_times(rng, PHONE_HOURS, m, start, day),
            np.where(
                device == WEBMAIL,
                local_times(rng, WEBMAIL_HOURS, m, start, day),
                local_times(rng, HOME_HOURS, m, start, day),
            ),
        ),
    )
    hour = local_hour(ts, start, day)
    u = rng.random(m)
    phone_home = (device == PHONE) & ((hour >= 19) | (hour < 8)) & (u < 0.7)
    phone_work = (device == PHONE) & works & (WORK_HOURS[hour] > 1) & (u < 0.3)
    where = np.where(at_work | phone_work, WORK, np.where((device == PHONE) & ~phone_home, CARRIER, HOME))
    vpn = pop.vpn_user[acct] & ((device != PHONE) | (rng.random(m) < 0.5)) & (where != CARRIER)
    where = np.where(vpn, VPN, where)
    trip = on_trip[acct]
    where = np.where(trip & (where != CARRIER), HOTEL, where)

    moved = ts >= life.move_ts[acct]
    home_v4 = np.where(moved, life.new_home_v4[acct], pop.home_v4[acct])
    carrier = np.maximum(pop.carrier[acct], 0)
    gw = plan.cgnat_gateway(carrier, rng.integers(0, 1 << 30, m) % life.gateways[carrier])
    kind = pop.workplace_kind[acct]
    place = pop.workplace[acct]
    h_first, h_count, h_flat = _nat_table(pop.hospital_nat)
    c_first, c_count, c_flat = _nat_table(pop.clinic_nat)
    pick = rng.integers(0, 1 << 30, m)
    hosp_ip = h_flat[
        h_first[np.minimum(place, len(h_first) - 1)] + pick % h_count[np.minimum(place, len(h_first) - 1)]
    ]
    clin_ip = c_flat[
        c_first[np.minimum(place, len(c_first) - 1)] + pick % c_count[np.minimum(place, len(c_first) - 1)]
    ]
    work_ip = np.where(kind == 1, hosp_ip, clin_ip)
    exit_loc = np.where(rng.random(n) < 0.8, 0, rng.integers(1, len(plan.VPN_LOCATIONS), n))
    exit_ip = plan.vpn_exit(0, 0) + (exit_loc << 8) + rng.integers(0, plan.VPN_EXITS_PER_LOCATION, n)
    hotel_ip = plan.foreign_base(life.trip_city) + rng.integers(256, 65000, n)
    v4 = np.select(
        [where == HOME, where == CARRIER, where == WORK, where == VPN],
        [home_v4, gw, work_ip, exit_ip[acct]],
        hotel_ip[acct],
    )
    use_v6 = (where == HOME) & pop.has_v6[acct] & ~moved & (rng.random(m) < 0.8)
    # Privacy extensions: the interface id changes every few hours within the household's /64.
    block = (ts - day_start(start, day)) // (4 * HOUR)
    iid_table = rng.integers(1, 1 << 16, (n, 7, 4))
    iid = iid_table[acct, block]
    v6 = plan.v6_text(pl.Series(pop.v6_prefix[acct].astype(str)), iid)
    ip = pl.select(pl.when(pl.Series(use_v6)).then(v6).otherwise(plan.v4_text(v4))).to_series()

    service = np.where((device == DESKTOP) & pop.uses_pop3[acct], "pop3", "imap")
    method = np.where((device == DESKTOP) & (acct % 5 == 0), "LOGIN", "PLAIN")
    mean_dur = np.select([device == PHONE, device == DESKTOP], [10 * MINUTE, 20 * MINUTE], 6 * MINUTE)
    duration = np.minimum(rng.exponential(1.0, m) * mean_dur, 29 * MINUTE).astype(np.int64) + 2 * US
    retr = np.where(service == "pop3", rng.poisson(3, m), 0)
    behaviour = np.select(
        [
            trip & (where == CARRIER),
            trip,
            vpn,
            moved & (where == HOME),
            use_v6,
            (where == WORK) & (kind == 1),
            (where == WORK) & (kind == 2),
            where == CARRIER,
            device == PHONE,
            device == WEBMAIL,
            service == "pop3",
        ],
        [
            "traveller_roaming",
            "traveller_abroad",
            "vpn_user",
            "moved",
            "ipv6_household",
            "hospital_nat",
            "clinic_nat",
            "phone_cgnat",
            "phone_wifi",
            "webmail",
            "pop3_desktop",
        ],
        "desktop_home",
    )
    sessions = frame(
        m,
        ts=ts,
        account=pop.account[acct].astype(str),
        ip=ip,
        service=service,
        outcome="success",
        method=method,
        webmail=device == WEBMAIL,
        duration=duration,
        bytes_in=(rng.lognormal(6.0, 1.0, m)).astype(np.int64) + 40,
        bytes_out=np.minimum(rng.lognormal(9.5, 1.6, m), 60e6).astype(np.int64) + 300,
        messages=retr,
        msg_size=(retr * rng.lognormal(10.3, 1.0, m)).astype(np.int64),
        behaviour=behaviour,
    )
    sends = _sends(rng, sessions)
    parts = [
        sessions,
        _typos(rng, sessions, 0.004),
        sends,
        _typos(rng, sends, 0.01),
        _bulk_sends(rng, sessions, pop, life),
        _stale(rng, pop, life, start, day),
        _fetchers(rng, pop, life, start, day),
    ]
    return pl.concat([conform(p) for p in parts])


def _typos(rng: np.random.Generator, sessions: pl.DataFrame, rate: float) -> pl.DataFrame:
    """One or two wrong passwords typed just before a successful login.

    One typo in five is in the login name instead: the user typed the name without the domain,
    which the server does not know (``unknown user``).
    """
    pick = rng.random(sessions.height) < rate
    if sessions.height and not pick.any():
        pick[rng.integers(0, sessions.height)] = True
    rows = sessions.filter(pl.Series(pick))
    tries = np.where(rng.random(rows.height) < 0.7, 1, 2)
    idx = np.repeat(np.arange(rows.height), tries)
    nth = np.concatenate([np.arange(t) for t in tries]) if len(tries) else np.zeros(0, dtype=np.int64)
    base = rows[idx]
    ts = base["ts"].to_numpy() - (nth + 1) * rng.integers(6 * US, 25 * US, len(idx))
    bare = pl.Series(rng.random(len(idx)) < 0.2)
    return base.with_columns(
        ts=pl.Series(ts),
        account=pl.when(bare)
        .then(pl.col("account").str.split("@").list.first())
        .otherwise(pl.col("account")),
        outcome=pl.when(bare).then(pl.lit("unknown_user")).otherwise(pl.lit("failure")),
        attempts=pl.lit(1, pl.Int32),
        duration=pl.Series(rng.integers(2 * US, 5 * US, len(idx))),
        bytes_in=pl.lit(0, pl.Int64),
        bytes_out=pl.lit(0, pl.Int64),
        messages=pl.lit(0, pl.Int32),
        msg_size=pl.lit(0, pl.Int64),
        pw_hash=random_hashes(rng, len(idx)),
        behaviour=pl.lit("typo"),
    )


def _sends(rng: np.random.Generator, sessions: pl.DataFrame) -> pl.DataFrame:
    """Messages submitted by users, from the device they read mail on (webmail: from the webmail host)."""
    web = sessions["webmail"].to_numpy()
    phone = sessions["behaviour"].is_in(["phone_cgnat", "phone_wifi", "traveller_roaming"]).to_numpy()
    p = np.select([web, phone], [0.2, 0.05], 0.15)
    rows = sessions.filter(pl.Series(rng.random(sessions.height) < p))
    k = rows.height
    msgs = np.where(rng.random(k) < 0.85, 1, 2)
    offset = (rng.random(k) * np.maximum(rows["duration"].to_numpy(), 10 * US)).astype(np.int64)
    return rows.with_columns(
        ts=pl.col("ts") + pl.Series(offset),
        ip=pl.when(pl.col("webmail")).then(pl.lit(plan.WEBMAIL_LIP)).otherwise(pl.col("ip")),
        service=pl.lit("submission"),
        outcome=pl.lit("success"),
        duration=pl.Series(rng.integers(1 * US, 4 * US, k) * msgs),
        messages=pl.Series(msgs),
        rcpt=pl.Series(np.minimum(rng.geometric(0.55, k), 9)),
        msg_size=pl.Series(rng.lognormal(10.2, 1.2, k).astype(np.int64) + 600),
        bytes_in=pl.lit(0, pl.Int64),
        bytes_out=pl.lit(0, pl.Int64),
        behaviour=pl.lit("smtp_send"),
    )


def _bulk_sends(
    rng: np.random.Generator, sessions: pl.DataFrame, pop: Population, life: LifeEvents
) -> pl.DataFrame:
    """A practitioner writing to dozens of patients at once, from their usual network."""
    mine = sessions.filter(
        pl.col("account").is_in(pop.account[life.bulk_sender].astype(str).tolist()) & ~pl.col("webmail")
    )
    rows = mine.filter(pl.Series(rng.random(mine.height) < 0.25))
    k = rows.height
    return rows.with_columns(
        ts=pl.col("ts") + pl.Series(rng.integers(30 * US, 5 * MINUTE, k)),
        service=pl.lit("submission"),
        duration=pl.Series(rng.integers(2 * US, 6 * US, k)),
        messages=pl.lit(1, pl.Int32),
        rcpt=pl.Series(rng.integers(25, 80, k)).cast(pl.Int32),
        msg_size=pl.Series(rng.integers(20_000, 400_000, k)),
        bytes_in=pl.lit(0, pl.Int64),
        bytes_out=pl.lit(0, pl.Int64),
        behaviour=pl.lit("smtp_bulk_legit"),
    )


def _fetchers(
    rng: np.random.Generator, pop: Population, life: LifeEvents, start: dt.date, day: int
) -> pl.DataFrame:
    """Third-party services polling mailboxes every 30 to 60 minutes, day and night, from hosting."""
    who = np.flatnonzero(life.fetcher_ip)
    per = 24 * 60 // 30 + 2
    ts = (
        day_start(start, day)
        + rng.integers(0, 30 * MINUTE, (len(who), 1))
        + np.cumsum(rng.integers(30 * MINUTE, 60 * MINUTE, (len(who), per)), axis=1)
    )
    keep = ts < day_start(start, day) + DAY
    acct = np.repeat(who, per).reshape(len(who), per)[keep]
    ts = ts[keep]
    k = len(ts)
    pop3 = acct % 2 == 0
    failed = ts >= life.fetcher_stale_ts[acct]
    retr = np.where(pop3 & ~failed, rng.poisson(0.5, k), 0)
    return frame(
        k,
        ts=ts,
        account=pop.account[acct].astype(str),
        ip=plan.v4_text(life.fetcher_ip[acct]),
        service=np.where(pop3, "pop3", "imap"),
        outcome=np.where(failed, "failure", "success"),
        attempts=failed.astype(np.int32),
        duration=rng.integers(1 * US, 4 * US, k),
        bytes_in=np.where(failed, 0, rng.integers(80, 200, k)),
        bytes_out=np.where(pop3 | failed, 0, rng.integers(400, 30_000, k)),
        messages=retr,
        msg_size=retr * rng.integers(3_000, 80_000, k),
        pw_hash=pl.select(
            pl.when(pl.Series(failed)).then(life.stale_hash.gather(pl.Series(acct)))
        ).to_series(),
        behaviour=np.where(failed, "cloud_fetcher_stale", "cloud_fetcher"),
    )


def _stale(
    rng: np.random.Generator, pop: Population, life: LifeEvents, start: dt.date, day: int
) -> pl.DataFrame:
    """A forgotten device retrying an old password every few minutes all day from home."""
    who = np.flatnonzero(life.stale)
    per = 16 * 60 // 6 + 20
    gaps = rng.integers(4 * MINUTE, 8 * MINUTE, (len(who), per))
    first = day_start(start, day) + 6 * HOUR + rng.integers(0, 5 * MINUTE, len(who))
    ts = first[:, None] + np.cumsum(gaps, axis=1)
    keep = ts < day_start(start, day) + 22 * HOUR
    acct = np.repeat(who, per).reshape(len(who), per)[keep]
    ts = ts[keep]
    k = len(ts)
    return frame(
        k,
        ts=ts,
        account=pop.account[acct].astype(str),
        ip=plan.v4_text(pop.home_v4[acct]),
        service=np.where(pop.uses_pop3[acct], "pop3", "imap"),
        outcome="failure",
        attempts=np.ones(k, dtype=np.int32),
        duration=rng.integers(2 * US, 4 * US, k),
        pw_hash=life.stale_hash.gather(pl.Series(acct)),
        behaviour="stale_password",
    )


def generate(
    rng: np.random.Generator, pop: Population, life: LifeEvents, start: dt.date, days: int
) -> pl.DataFrame:
    """All legitimate sessions of the world."""
    return pl.concat([_day(rng, pop, life, start, d) for d in range(days)])
