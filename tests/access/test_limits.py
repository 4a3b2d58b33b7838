"""The per-key limiter's windows on a clock the test moves: requests and tokens per minute
slide, reservations settle to what a request cost, concurrency frees on settling, and
Retry-After says when the window has room again. And a keyed request's last use reaches the
store later, in a batch, not on the request path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelyard.access.keys import ApiKeys, KeyLimits, KeyRequest
from modelyard.access.limits import KeyLimiter
from modelyard.errors import TooManyRequests
from modelyard.store.db import Database


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_slide() -> None:
    clock = Clock()
    limiter = KeyLimiter(clock)
    limits = KeyLimits(requests_per_minute=2)
    for _ in range(2):
        limiter.settle(limiter.admit("k", limits, 0), 0)
        clock.now += 10
    with pytest.raises(TooManyRequests) as refused:
        limiter.admit("k", limits, 0)
    assert refused.value.error_code == "rate_limited_requests"
    assert refused.value.headers() == {"Retry-After": "40"}  # the first leaves at 1060
    clock.now = 1060.5
    limiter.admit("k", limits, 0)
    assert limiter.admit("other", limits, 0)  # each key its own window


def test_tokens_are_reserved_then_settled() -> None:
    clock = Clock()
    limiter = KeyLimiter(clock)
    limits = KeyLimits(tokens_per_minute=100)
    first = limiter.admit("k", limits, 60)
    with pytest.raises(TooManyRequests) as refused:
        limiter.admit("k", limits, 60)  # 120 reserved would pass the limit
    assert refused.value.error_code == "rate_limited_tokens"
    limiter.settle(first, 25)  # it cost less than it might have
    assert limiter.window_tokens("k") == 25
    second = limiter.admit("k", limits, 60)
    assert limiter.window_tokens("k") == 85
    limiter.settle(second, 80)
    clock.now += 30
    with pytest.raises(TooManyRequests) as later:
        limiter.admit("k", limits, 50)
    assert later.value.headers() == {"Retry-After": "30"}  # both leave the window at 1060
    clock.now = 1060.1
    assert limiter.window_tokens("k") == 0
    limiter.admit("k", limits, 500)  # into an empty window, whatever it may cost


def test_concurrency_frees_when_a_request_settles() -> None:
    limiter = KeyLimiter(Clock())
    limits = KeyLimits(concurrent_requests=1)
    held = limiter.admit("k", limits, 0)
    with pytest.raises(TooManyRequests) as refused:
        limiter.admit("k", limits, 0)
    assert refused.value.error_code == "rate_limited_concurrency"
    assert refused.value.http_status == 429
    limiter.settle(held, 0)
    limiter.settle(held, 0)  # settling twice frees once
    limiter.admit("k", limits, 0)
    with pytest.raises(TooManyRequests):
        limiter.admit("k", limits, 0)


def test_last_use_is_written_later_in_a_batch(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    keys = ApiKeys(db)
    secret, created = keys.create(KeyRequest("ci", ("inference",), models=("tiny*",)))
    assert keys.list()[0].last_used_at is None

    async def use() -> None:
        principal = keys.stored(secret)
        assert principal is not None and principal.rules is not None
        assert principal.rules.models == ("tiny*",)
        fresh = ApiKeys(db)  # another reader of the store sees nothing written yet
        assert fresh.list()[0].last_used_at is None
        assert keys.list()[0].last_used_at is not None  # shown from memory meanwhile
        await keys.close()

    asyncio.run(use())
    assert ApiKeys(db).list()[0].last_used_at is not None
    keys.delete(created.rules.id)
    assert keys.stored(secret) is None
    db.dispose()
