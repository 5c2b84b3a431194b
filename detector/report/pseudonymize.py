"""Keyed pseudonyms for account names, for reports shared outside the SOC.

``acct-`` + the first 16 hex digits of HMAC-SHA256(key, account): the same account gets the same
pseudonym every night under the same key, nobody without the key can recompute it from a guessed
name, and different keys give unrelated pseudonyms. Source addresses are kept (they are what a
block acts on). Raw log lines in the quarantine are withheld, since any field may hold a name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import polars as pl

PREFIX = "acct-"
DIGITS = 16


def pseudonym(key: str, account: str) -> str:
    """The pseudonym of one account under ``key``."""
    digest = hmac.new(key.encode(), account.encode(), hashlib.sha256).hexdigest()
    return f"{PREFIX}{digest[:DIGITS]}"


class Pseudonymizer:
    """Replace account names in frames; remembers every name it has mapped (for free text)."""

    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("empty pseudonymisation key")
        self._key = key
        self._cache: dict[str, str] = {}

    def of(self, account: str) -> str:
        p = self._cache.get(account)
        if p is None:
            p = self._cache[account] = pseudonym(self._key, account)
        return p

    def learn(self, accounts: Iterable[str | None]) -> None:
        for a in accounts:
            if a is not None:
                self.of(a)

    def _series(self, s: pl.Series) -> pl.Series:
        uniq = s.drop_nulls().unique()
        mapping = {a: self.of(a) for a in uniq.to_list()}
        return s.replace_strict(mapping, default=None, return_dtype=pl.String)

    def column(self, name: str) -> pl.Expr:
        """Expression mapping an account column to pseudonyms (works batch by batch)."""
        return pl.col(name).map_batches(self._series, return_dtype=pl.String).alias(name)

    def text(self, expr: pl.Expr) -> pl.Expr:
        """Expression replacing every known account name inside free text."""
        if not self._cache:
            return expr
        names = sorted(self._cache, key=len, reverse=True)
        return expr.str.replace_many(names, [self._cache[n] for n in names], leftmost=True)

    def text_list(self, name: str) -> pl.Expr:
        return pl.col(name).list.eval(self.text(pl.element())).alias(name)
