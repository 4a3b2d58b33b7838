"""The audit log (SPEC §12): who did what from where, and how it ended.

Every mutating request is recorded. Entries are written in the background, in batches, shortly
after they are recorded, so that no response waits for a database write (a chat answer's first
token would otherwise wait behind one). Reading the log writes what is pending first, so a
read that follows a request always finds it; shutting down writes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import select

from modelyard.clock import iso, utcnow
from modelyard.store.db import Database
from modelyard.store.tables import AuditRow

log = logging.getLogger("modelyard.access.audit")
WRITE_AFTER_S = 0.1  # entries recorded within this long are written together


class AuditLog:
    """Records entries now; writes them soon, in one transaction per batch."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one batch written at a time, in order

    def record(
        self, *, actor: str, client: str, method: str, path: str, status: int, detail: str
    ) -> None:
        self._pending.append(
            {
                "ts": utcnow(),
                "actor": actor[:128],
                "client": client[:128],
                "method": method[:8],
                "path": path[:2000],
                "status": status,
                "detail": detail,
            }
        )
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_soon())

    async def _write_soon(self) -> None:
        # Entries recorded while a batch is being written wait for the next round here.
        while self._pending:
            await asyncio.sleep(WRITE_AFTER_S)
            await self.flush()

    async def flush(self) -> None:
        """Write every entry recorded so far."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await asyncio.to_thread(self._insert, batch)
            except Exception:  # the audit log must never break a request
                log.exception("could not write %d audit entries", len(batch))

    def _insert(self, batch: list[dict[str, Any]]) -> None:
        with self.db.session() as s:
            s.add_all(AuditRow(**values) for values in batch)

    async def entries(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first (pending ones included)."""
        await self.flush()

        def read() -> list[dict[str, Any]]:
            with self.db.session() as s:
                rows = s.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit))
                return [
                    {
                        "ts": iso(r.ts),
                        "actor": r.actor,
                        "client": r.client,
                        "method": r.method,
                        "path": r.path,
                        "status": r.status,
                        "detail": r.detail,
                    }
                    for r in rows
                ]

        return await asyncio.to_thread(read)

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.flush()
