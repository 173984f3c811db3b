"""Token-bucket rate limits on the caller's clock: moderation limits prompts per
viewer and overall with them, the voting engine paces anarchy mode.
"""

from __future__ import annotations

from cachetools import LRUCache


class RateLimiter:
    """Token buckets per key, on whatever clock the caller passes in.

    Hand-written rather than `limits`: it runs on the show's clock, which
    replays and tests drive virtually, and `limits` reads the wall clock."""

    def __init__(self, per_s: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.per_s = per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(max_keys)  # the idlest go first

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - last) * self.per_s)

    def check(self, key: str, now: float) -> bool:
        """Whether `allow` would say yes, without spending anything."""
        return self._tokens(key, now) >= 1.0

    def allow(self, key: str, now: float) -> bool:
        tokens = self._tokens(key, now)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        return ok
