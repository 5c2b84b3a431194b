"""Small expression builders over enriched events: what a row is, and its weights."""

from __future__ import annotations

import polars as pl

from detector.schema import Action, C, Outcome

EARTH_KM = 6371.0088


def is_login() -> pl.Expr:
    return pl.col(C.ACTION) == Action.LOGIN


def is_success() -> pl.Expr:
    return is_login() & (pl.col(C.OUTCOME) == Outcome.SUCCESS)


def is_failed() -> pl.Expr:
    """An authentication attempt that the server refused (any refusal, including unknown user)."""
    return is_login() & pl.col(C.OUTCOME).is_in(Outcome.FAILED)


def is_wrong_password() -> pl.Expr:
    return is_login() & (pl.col(C.OUTCOME) == Outcome.FAILURE)


def is_unknown_user() -> pl.Expr:
    return is_login() & (pl.col(C.OUTCOME) == Outcome.UNKNOWN_USER)


def attempts() -> pl.Expr:
    """Attempts a row stands for (Dovecot's 'N attempts'); at least 1."""
    return pl.col(C.ATTEMPTS).fill_null(1).clip(lower_bound=1).cast(pl.Int64)


def failed_attempts() -> pl.Expr:
    return pl.when(is_failed()).then(attempts()).otherwise(0)


def flag(name: str) -> pl.Expr:
    """A nullable boolean enrichment column as 0/1."""
    return pl.col(name).fill_null(False).cast(pl.Int8)


def is_anonymiser() -> pl.Expr:
    return (
        pl.col(C.IS_HOSTING).fill_null(False)
        | pl.col(C.IS_VPN).fill_null(False)
        | pl.col(C.IS_TOR).fill_null(False)
    )


def haversine_km(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    """Great-circle distance in kilometres between two points given in degrees."""
    p1, p2 = lat1.radians(), lat2.radians()
    dphi = p2 - p1
    dlmb = (lon2 - lon1).radians()
    a = (dphi / 2).sin() ** 2 + p1.cos() * p2.cos() * (dlmb / 2).sin() ** 2
    return 2 * EARTH_KM * a.sqrt().clip(upper_bound=1.0).arcsin()


def share(part: pl.Expr, whole: pl.Expr) -> pl.Expr:
    """part / whole, 0 where whole is 0."""
    return pl.when(whole > 0).then(part / whole).otherwise(0.0)
