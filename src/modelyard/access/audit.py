"""The audit log (SPEC §12): who did what from where, and how it ended.

Every mutating request is recorded. Entries are written in the background, in batches, shortly
after they are recorded, so that no response waits for a database write (a chat answer's first
token would otherwise wait behind one). Reading the log writes what is pending first, so a
read that follows a request always finds it; shutting down writes the rest.

Refused requests (a foreign origin, no key, a bad key…) cost their sender nothing, so they are
not one row each: they are counted per source address, reason and minute, in one row whose
``count`` grows. The table is kept to ``audit_retention_days`` and ``audit_max_rows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from modelyard.clock import iso, utcnow
from modelyard.store.db import Database
from modelyard.store.tables import AuditRow

log = logging.getLogger("modelyard.access.audit")
WRITE_AFTER_S = 0.1  # entries recorded within this long are written together
REFUSALS_WINDOW_S = 60  # refused requests are counted per source and reason in this window
PRUNE_EVERY_S = 60.0
MAX_REFUSAL_SOURCES = 10_000  # beyond this many open counters, new sources share one
_MAX_REFUSED_PATH = 256


class AuditOutcome(StrEnum):
    """How a request ended, as the Audit page filters it."""

    OK = "ok"  # below 400
    REFUSED = "refused"  # 401, 403, 413, 429: no or a bad key, a foreign origin, too big…
    FAILED = "failed"  # any other 4xx or 5xx


REFUSAL_STATUSES = (401, 403, 413, 429)


def outcome_of(status: int) -> AuditOutcome:
    if status < 400:
        return AuditOutcome.OK
    return AuditOutcome.REFUSED if status in REFUSAL_STATUSES else AuditOutcome.FAILED


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to read: every given condition holds."""

    key: str = ""  # a part of the actor (the key's name, or the local user)
    action: str = ""  # a part of "METHOD path", case-insensitive
    outcome: AuditOutcome | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.key:
            found.append(AuditRow.actor.icontains(self.key, autoescape=True))
        if self.action:
            action = AuditRow.method.concat(" ").concat(AuditRow.path)
            found.append(action.icontains(self.action, autoescape=True))
        if self.outcome is AuditOutcome.OK:
            found.append(AuditRow.status < 400)
        elif self.outcome is AuditOutcome.REFUSED:
            found.append(AuditRow.status.in_(REFUSAL_STATUSES))
        elif self.outcome is AuditOutcome.FAILED:
            found.append(AuditRow.status >= 400)
            found.append(AuditRow.status.not_in(REFUSAL_STATUSES))
        if self.since is not None:
            found.append(AuditRow.ts >= self.since)
        if self.until is not None:
            found.append(AuditRow.ts <= self.until)
        return found


@dataclass(frozen=True, slots=True)
class _Recorded:
    """An entry recorded and not yet written."""

    ts: datetime
    actor: str
    client: str
    method: str
    path: str
    status: int
    detail: str

    def row(self, count: int = 1) -> AuditRow:
        return AuditRow(
            ts=self.ts,
            actor=self.actor,
            client=self.client,
            method=self.method,
            path=self.path,
            status=self.status,
            detail=self.detail,
            count=count,
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the log as read (``GET /api/audit``); ``count``: refused requests it
    stands for."""

    ts: str | None
    actor: str
    client: str
    method: str
    path: str
    status: int
    outcome: AuditOutcome
    detail: str
    count: int

    def wire(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "actor": self.actor,
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "count": self.count,
        }


@dataclass
class _Refusals:
    """The counter of one (source, reason, window): its row once written, and what is new."""

    entry: _Recorded
    count: int = 0
    written: int = 0
    row_id: int | None = None


class AuditLog:
    """Records entries now; writes them soon, in one transaction per batch."""

    def __init__(self, db: Database, retention_days: float = 90, max_rows: int = 100_000) -> None:
        self.db = db
        self.retention = timedelta(days=retention_days)
        self.max_rows = max_rows
        self._pending: list[_Recorded] = []
        self._refusals: dict[tuple[str, str, int], _Refusals] = {}
        self._writer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one batch written at a time, in order
        self._pruned_at = -PRUNE_EVERY_S

    def record(
        self, *, actor: str, client: str, method: str, path: str, status: int, detail: str
    ) -> None:
        self._pending.append(
            _Recorded(
                ts=utcnow(),
                actor=actor[:128],
                client=client[:128],
                method=method[:8],
                path=path[:2000],
                status=status,
                detail=detail,
            )
        )
        self._wake_writer()

    def refused(
        self, *, actor: str, client: str, method: str, path: str, status: int, code: str
    ) -> None:
        """Count a refused request with the others from its source for the same reason."""
        window = int(time.time()) // REFUSALS_WINDOW_S
        key = (client[:128], code, window)
        if key not in self._refusals and len(self._refusals) >= MAX_REFUSAL_SOURCES:
            key = ("(many sources)", code, window)
        counter = self._refusals.get(key)
        if counter is None:
            counter = self._refusals[key] = _Refusals(
                _Recorded(
                    ts=utcnow(),
                    actor=actor[:128],
                    client=key[0],
                    method=method[:8],
                    path=path[:_MAX_REFUSED_PATH],
                    status=status,
                    detail=code,
                )
            )
        counter.count += 1
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_soon())

    async def _write_soon(self) -> None:
        # Entries recorded while a batch is being written wait for the next round here.
        while self._pending or any(c.count > c.written for c in self._refusals.values()):
            await asyncio.sleep(WRITE_AFTER_S)
            await self.flush()

    async def flush(self) -> None:
        """Write every entry recorded so far (and prune, at most once a minute)."""
        async with self._lock:
            batch, self._pending = self._pending, []
            counters = [c for c in self._refusals.values() if c.count > c.written]
            window = int(time.time()) // REFUSALS_WINDOW_S
            # Closed windows are dropped once written: their rows keep the final counts.
            for key in [k for k, c in self._refusals.items() if k[2] < window]:
                del self._refusals[key]
            prune = time.monotonic() - self._pruned_at >= PRUNE_EVERY_S
            if not batch and not counters and not prune:
                return
            if prune:
                self._pruned_at = time.monotonic()
            try:
                await asyncio.to_thread(self._write, batch, counters, prune)
            except Exception:  # the audit log must never break a request
                log.exception("could not write %d audit entries", len(batch) + len(counters))

    def _write(self, batch: list[_Recorded], counters: list[_Refusals], prune: bool) -> None:
        with self.db.session() as s:
            s.add_all(entry.row() for entry in batch)
            for counter in counters:
                count = counter.count
                if counter.row_id is None:
                    row = counter.entry.row(count)
                    s.add(row)
                    s.flush()
                    counter.row_id = row.id
                else:
                    s.execute(
                        update(AuditRow).where(AuditRow.id == counter.row_id).values(count=count)
                    )
                counter.written = count
            if prune:
                self._prune(s)

    def _prune(self, s: Session) -> None:
        """Drop rows older than the retention, then the oldest beyond ``max_rows``."""
        s.execute(delete(AuditRow).where(AuditRow.ts < utcnow() - self.retention))
        newest_dropped = s.scalar(
            select(AuditRow.id).order_by(AuditRow.id.desc()).offset(self.max_rows).limit(1)
        )
        if newest_dropped is not None:
            s.execute(delete(AuditRow).where(AuditRow.id <= newest_dropped))

    async def entries(self, limit: int, where: AuditFilter | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries that match, newest first (pending ones included)."""
        await self.flush()
        conditions = (where or AuditFilter()).conditions()

        def read() -> list[AuditEntry]:
            with self.db.session() as s:
                query = select(AuditRow).where(*conditions).order_by(AuditRow.id.desc())
                rows = s.scalars(query.limit(limit))
                return [
                    AuditEntry(
                        ts=iso(r.ts),
                        actor=r.actor,
                        client=r.client,
                        method=r.method,
                        path=r.path,
                        status=r.status,
                        outcome=outcome_of(r.status),
                        detail=r.detail,
                        count=r.count,
                    )
                    for r in rows
                ]

        return await asyncio.to_thread(read)

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.flush()
