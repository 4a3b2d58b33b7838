"""Per-key limits at the gateway: requests per minute, tokens per minute (a sliding 60 s
window) and concurrent requests, counted in memory by one owner.

Every method is plain and runs on the event loop, which never interrupts it: admission is
decided on the counters as they are, with no lock and no store write. Tokens are reserved up
front (the prompt's estimate plus the most the answer may cost) and settled afterwards with
the backend's own usage, so many concurrent requests cannot overshoot the limit: a request is
admitted only while the window's reserved and used tokens leave room for it — except into an
empty window, so one request larger than the whole limit is not refused forever. Tokens
admitted in any 60 s are thus at most the limit plus one request's reservation.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from modelyard.access.keys import KeyLimits
from modelyard.errors import TooManyRequests

WINDOW_S = 60.0


@dataclass
class Reservation:
    """One admitted request's place in its key's counters, until it is released."""

    subject: str
    tokens: int  # reserved, then what the request cost once settled
    at: float
    released: bool = False


@dataclass
class _Counters:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[Reservation] = field(default_factory=deque)
    active: int = 0

    def prune(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.tokens and self.tokens[0].at <= now - WINDOW_S:
            self.tokens.popleft()

    @property
    def idle(self) -> bool:
        return not self.requests and not self.tokens and not self.active


def _refuse(code: str, what: str, retry_after_s: float) -> TooManyRequests:
    return TooManyRequests(
        f"this key's limit on {what} is reached",
        code=code,
        hint="Retry after the number of seconds in the Retry-After header, or ask for a "
        "key with a higher limit.",
        retry_after_s=retry_after_s,
    )


class KeyLimiter:
    """The counters of every key with limits, by the principal's subject."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._counters: dict[str, _Counters] = {}

    def admit(self, subject: str, limits: KeyLimits, tokens: int) -> Reservation:
        """Count one request reserving ``tokens``, or raise 429 naming the limit reached."""
        now = self.clock()
        counters = self._counters.setdefault(subject, _Counters())
        counters.prune(now)
        rpm, tpm, most = (
            limits.requests_per_minute,
            limits.tokens_per_minute,
            limits.concurrent_requests,
        )
        if most is not None and counters.active >= most:
            raise _refuse("rate_limited_concurrency", "concurrent requests", 1)
        if rpm is not None and len(counters.requests) >= rpm:
            wait = counters.requests[len(counters.requests) - rpm] + WINDOW_S - now
            raise _refuse("rate_limited_requests", "requests per minute", wait)
        if tpm is not None and counters.tokens:
            held = sum(r.tokens for r in counters.tokens)
            if held + tokens > tpm:
                raise _refuse(
                    "rate_limited_tokens",
                    "tokens per minute",
                    self._tpm_wait(counters, tpm - tokens, now),
                )
        reservation = Reservation(subject, tokens, now)
        counters.active += 1
        counters.requests.append(now)
        counters.tokens.append(reservation)
        return reservation

    @staticmethod
    def _tpm_wait(counters: _Counters, room: int, now: float) -> float:
        """Seconds until the window holds at most ``room`` tokens (the whole window when the
        request can only go into an empty one)."""
        held = sum(r.tokens for r in counters.tokens)
        last = counters.tokens[-1].at
        for reservation in counters.tokens:
            if held <= room:
                break
            held -= reservation.tokens
            last = reservation.at
        return max(last + WINDOW_S - now, 1.0)

    def settle(self, reservation: Reservation, tokens: int) -> None:
        """The request is over: its reservation becomes what it cost (still counted in the
        window from when it was admitted), and it is no longer concurrent."""
        if reservation.released:
            return
        reservation.released = True
        reservation.tokens = max(tokens, 0)
        counters = self._counters.get(reservation.subject)
        if counters is None:
            return
        counters.active -= 1
        counters.prune(self.clock())
        if counters.idle:
            del self._counters[reservation.subject]

    def window_tokens(self, subject: str) -> int:
        """Tokens reserved or used in the last 60 s (for tests and the benchmark)."""
        counters = self._counters.get(subject)
        if counters is None:
            return 0
        counters.prune(self.clock())
        return sum(r.tokens for r in counters.tokens)
