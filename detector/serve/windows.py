"""Live counters over sliding windows, bounded in memory.

A window of ``window`` seconds is ``window / bucket`` buckets; each key keeps only the buckets it
was counted in (a dict bucket -> count), so a key costs a few dozen bytes and a count is a sum
over at most ``window / bucket`` small integers. Stale keys are swept by :meth:`Counter.sweep`
(the service calls it once a bucket); when ``max_keys`` keys are live, new keys are not counted
(an attacker spreading over more keys than that gains nothing the tarpit would have cost, and
memory stays bounded).
"""

from __future__ import annotations

from collections.abc import Hashable


class Counter:
    """Events per key over the last ``window`` seconds, at ``bucket`` seconds' resolution."""

    def __init__(self, window: int, bucket: int, max_keys: int) -> None:
        self.bucket = max(1, int(bucket))
        self.span = max(1, int(window) // self.bucket)
        self.max_keys = max_keys
        self.keys: dict[Hashable, dict[int, int]] = {}
        self.dropped = 0
        """Events not counted because the table was full."""

    def add(self, key: Hashable, now: float, n: int = 1) -> None:
        b = int(now) // self.bucket
        buckets = self.keys.get(key)
        if buckets is None:
            if len(self.keys) >= self.max_keys:
                self.dropped += n
                return
            self.keys[key] = {b: n}
            return
        buckets[b] = buckets.get(b, 0) + n
        if len(buckets) > self.span:
            oldest = b - self.span
            for old in [x for x in buckets if x <= oldest]:
                del buckets[old]

    def count(self, key: Hashable, now: float) -> int:
        buckets = self.keys.get(key)
        if not buckets:
            return 0
        oldest = int(now) // self.bucket - self.span
        return sum(c for b, c in buckets.items() if b > oldest)

    def sweep(self, now: float) -> int:
        """Forget keys with nothing in the window; returns how many were dropped."""
        oldest = int(now) // self.bucket - self.span
        stale = [k for k, buckets in self.keys.items() if max(buckets) <= oldest]
        for k in stale:
            del self.keys[k]
        return len(stale)

    def __len__(self) -> int:
        return len(self.keys)


class Expiring:
    """Keys remembered for ``ttl`` seconds after they were last seen (bounded like :class:`Counter`)."""

    def __init__(self, ttl: float, max_keys: int) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self.seen: dict[Hashable, float] = {}

    def touch(self, key: Hashable, now: float) -> None:
        if key in self.seen or len(self.seen) < self.max_keys:
            self.seen[key] = now

    def recent(self, key: Hashable, now: float) -> bool:
        t = self.seen.get(key)
        return t is not None and now - t < self.ttl

    def sweep(self, now: float) -> int:
        stale = [k for k, t in self.seen.items() if now - t >= self.ttl]
        for k in stale:
            del self.seen[k]
        return len(stale)

    def __len__(self) -> int:
        return len(self.seen)
