"""Per-viewer memory stays bounded, and what it forgets first is what matters
least: the idlest viewer's rate-limit bucket, the oldest message ids."""

from __future__ import annotations

from streambot.ratelimit import RateLimiter


def test_the_rate_limiter_forgets_the_idlest_viewer_first() -> None:
    lim = RateLimiter(per_s=0.0, burst=1, max_keys=2)  # no refill: a spent bucket stays spent
    assert lim.allow("a", 0.0) and lim.allow("b", 0.0)
    assert not lim.allow("a", 1.0)  # a is spent, and now the most recent
    assert lim.allow("c", 2.0)  # a third viewer: b, the idlest, is forgotten
    assert not lim.allow("a", 3.0)  # a is still remembered (and still spent)
    assert lim.allow("b", 4.0)  # b starts afresh
    assert len(lim._buckets) == 2
