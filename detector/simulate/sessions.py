"""The intermediate table of the simulator: one row per client connection (a session).

Generators (benign and attacks) produce session rows; the renderer turns each row into the log
lines the daemons would write; the labels are derived from the attack rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

US = 1_000_000
MINUTE = 60 * US
HOUR = 3600 * US
DAY = 86400 * US
PARIS = ZoneInfo("Europe/Paris")

SESSION_SCHEMA = pl.Schema(
    {
        "ts": pl.Int64,  # connection time, microseconds since the epoch (UTC)
        "account": pl.String,  # the user name the client gave
        "ip": pl.String,
        "service": pl.String,  # imap, pop3, submission
        "outcome": pl.String,  # success, failure, unknown_user
        "attempts": pl.Int32,  # failed attempts in the connection
        "method": pl.String,  # SASL mechanism
        "webmail": pl.Boolean,  # connection made by the webmail front end on the user's behalf
        "duration": pl.Int64,  # microseconds until the session ends
        "bytes_in": pl.Int64,
        "bytes_out": pl.Int64,
        "messages": pl.Int32,  # submission: messages sent; pop3: messages retrieved
        "rcpt": pl.Int32,  # submission: recipients per message
        "msg_size": pl.Int64,  # submission: bytes per message; pop3: bytes retrieved
        "pw_hash": pl.String,  # failures: SHA1 prefix of the password tried
        "behaviour": pl.String,
        "campaign": pl.String,
        "technique": pl.String,
        "compromised": pl.Boolean,  # a login by the attacker into a compromised account
    }
)


def frame(n: int, **cols: object) -> pl.DataFrame:
    """A session frame of ``n`` rows from the given columns (arrays or scalars); others get defaults."""
    defaults: dict[str, object] = {
        "attempts": 0,
        "method": "PLAIN",
        "webmail": False,
        "duration": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "messages": 0,
        "rcpt": 0,
        "msg_size": 0,
        "compromised": False,
    }
    data = {}
    for name, dtype in SESSION_SCHEMA.items():
        value = cols.get(name, defaults.get(name))
        if isinstance(value, pl.Series):
            data[name] = value.cast(dtype).rename(name)
        elif isinstance(value, np.ndarray):
            data[name] = pl.Series(name, value).cast(dtype)
        else:
            data[name] = pl.repeat(value, n, dtype=dtype, eager=True).rename(name)
    return pl.DataFrame(data)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Exactly the session columns, in order, with their dtypes."""
    return df.select([pl.col(name).cast(dtype) for name, dtype in SESSION_SCHEMA.items()])


def day_start(start: dt.date, day: int) -> int:
    d = start + dt.timedelta(days=day)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * US


def utc_offset(start: dt.date, day: int) -> int:
    """Offset of Paris local time from UTC on that day, in microseconds."""
    d = start + dt.timedelta(days=day)
    off = dt.datetime(d.year, d.month, d.day, 12, tzinfo=PARIS).utcoffset()
    return int(off.total_seconds()) * US if off else 0


def weekday(start: dt.date, day: int) -> int:
    return (start + dt.timedelta(days=day)).weekday()


def local_times(
    rng: np.random.Generator, hour_weights: np.ndarray, n: int, start: dt.date, day: int
) -> np.ndarray:
    """``n`` times on that day drawn from a local-time hourly profile, as UTC microseconds."""
    w = np.asarray(hour_weights, dtype=float)
    hours = rng.choice(24, n, p=w / w.sum())
    local = hours * HOUR + rng.integers(0, HOUR, n)
    return day_start(start, day) + (local - utc_offset(start, day)) % DAY


def local_hour(ts: np.ndarray, start: dt.date, day: int) -> np.ndarray:
    return ((ts - day_start(start, day) + utc_offset(start, day)) % DAY) // HOUR


def password_hash(password: str) -> str:
    """What Dovecot logs with ``auth_verbose_passwords = sha1:6``: the first 6 hex digits of SHA1."""
    return hashlib.sha1(password.encode()).hexdigest()[:6]


def random_hashes(rng: np.random.Generator, n: int) -> pl.Series:
    """Hash prefixes of ``n`` distinct random passwords."""
    return hex6(rng.integers(0, 1 << 24, n))


def hex6(values: np.ndarray) -> pl.Series:
    from detector.simulate.plan import hextets

    v = np.asarray(values, dtype=np.int64)
    hi = hextets(v >> 16).str.pad_start(2, "0")
    lo = hextets(v & 0xFFFF).str.pad_start(4, "0")
    return pl.select(pl.concat_str(hi, lo)).to_series().rename("pw_hash")
