"""The attack mix of a world: how big, how fast, from where and how the attackers behave.

``AttackMix()`` is the fixed mix every world had before mixes were drawn (``data/samples``, the
golden runs and the tuned worlds keep it, byte for byte). ``AttackMix.draw(seed)`` draws a mix from
the seed, so that another seed is a genuinely different world, not the same attacks on other
people. The draw uses its own generator (seeded from the world's seed and a constant), so the mix
of a seed can be read without building the world. Distributions: docs/simulate.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

TAKEOVER_INFRA = ("hosting", "vpn", "tor", "residential_same_city", "residential_domestic")
"""Where takeover logins come from; the fixed mix rotates through the first three."""


@dataclass(frozen=True)
class AttackMix:
    """Every knob of the campaigns; the defaults are the fixed mix."""

    drawn: bool = False
    scale: float = 1.0
    """Attack scale: multiplies the stuffing list, the spray's reach, the brute-force targets and the bots."""
    stuffing_list: float = 0.10
    """Share of the real accounts on the leaked list."""
    stuffing_unknown: float = 1.5
    """Non-existent accounts on the list per real one."""
    stuffing_valid: float = 0.03
    """Share of the listed real accounts whose leaked password still works."""
    practitioner_bias: float = 1.0
    """Weight of a practitioner against another account when the list is drawn (1: no preference)."""
    proxies_per_try: float = 0.5
    """Proxy pool size per day, per credential tried that day."""
    proxy_domestic: float = 0.30
    proxy_mobile: float = 0.12
    proxy_shared: float = 0.06
    proxy_same_city: float = 0.0
    """Share of the stuffing tries sent from a domestic home in the victim's own city."""
    proxy_keep: float = 0.4
    """Share of yesterday's proxies still used today (1 - daily rotation)."""
    bursts: int = 3
    burst_hours: tuple[float, float] = (1.0, 3.0)
    midnight: float = 0.0
    """Probability that a burst starts late in the evening and runs over midnight."""
    low_and_slow: float = 0.0
    """Share of the stuffing tries spread evenly over the whole day instead of in bursts."""
    retry: float = 0.2
    """Retries of earlier entries, as a share of the day's new entries."""
    spray_reach: float = 0.75
    spray_success: float = 0.0007
    spray_hours: float = 20.0
    spray_hosts: int = 6
    brute_per_accounts: int = 1500
    """One targeted practitioner per that many accounts (at least two)."""
    brute_conns: tuple[int, int] = (80, 130)
    """Connections per target and day (low at the low-and-slow end)."""
    bots_per_account: float = 1 / 3
    takeover_logins: tuple[int, int] = (3, 6)
    takeover_delay_hours: float = 8.0
    takeover_infra: tuple[float, ...] | None = None
    """Probabilities over ``TAKEOVER_INFRA``; ``None``: the fixed rotation (first victim from its city)."""

    @classmethod
    def draw(cls, seed: int) -> AttackMix:
        r = np.random.default_rng([seed, 15])
        u = r.uniform

        def share(lo: float, hi: float) -> float:
            return round(float(u(lo, hi)), 4)

        domestic = share(0.1, 0.7)
        mobile = share(0.03, 0.25)
        shared = share(0.0, 0.12)
        scale = round(float(np.exp(u(np.log(0.5), np.log(3.0)))), 3)
        slow = r.random() < 0.3
        infra = r.dirichlet([2.0, 2.0, 1.0, 1.0, 1.0])
        lo_logins = int(r.integers(1, 5))
        return cls(
            drawn=True,
            scale=scale,
            stuffing_list=share(0.04, 0.20),
            stuffing_unknown=share(0.3, 3.0),
            stuffing_valid=share(0.01, 0.08),
            practitioner_bias=round(float(np.exp(u(np.log(0.5), np.log(4.0)))), 3),
            proxies_per_try=share(0.2, 1.5),
            proxy_domestic=domestic,
            proxy_mobile=min(mobile, round(0.95 - domestic - shared, 4)),
            proxy_shared=shared,
            proxy_same_city=share(0.0, 0.3),
            proxy_keep=share(0.0, 0.7),
            bursts=int(r.integers(1, 7)),
            burst_hours=(1.0, share(1.5, 6.0)),
            midnight=share(0.0, 0.6),
            low_and_slow=share(0.0, 0.7) if slow else 0.0,
            retry=share(0.0, 0.5),
            spray_reach=share(0.3, 0.9),
            spray_success=round(float(np.exp(u(np.log(0.0003), np.log(0.003)))), 5),
            spray_hours=share(6.0, 24.0),
            spray_hosts=int(r.integers(2, 13)),
            brute_per_accounts=int(r.integers(500, 3001)),
            brute_conns=(20, 60) if slow else (80, 200),
            bots_per_account=share(0.1, 0.8),
            takeover_logins=(lo_logins, lo_logins + int(r.integers(2, 6))),
            takeover_delay_hours=share(0.5, 24.0),
            takeover_infra=tuple(round(float(p), 4) for p in infra / infra.sum()),
        )

    def summary(self) -> dict[str, object]:
        """The mix as plain JSON/TOML values."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        if self.takeover_infra is not None:
            out["takeover_infra"] = dict(zip(TAKEOVER_INFRA, self.takeover_infra, strict=True))
        return out


FIXED = AttackMix()


def resolve(mix: str | AttackMix, seed: int) -> AttackMix:
    """``"fixed"``, ``"drawn"`` (from the seed) or a mix given as is."""
    if isinstance(mix, AttackMix):
        return mix
    if mix == "fixed":
        return FIXED
    if mix == "drawn":
        return AttackMix.draw(seed)
    from detector.errors import InputError

    raise InputError(f"--mix must be 'fixed' or 'drawn', got {mix!r}")
