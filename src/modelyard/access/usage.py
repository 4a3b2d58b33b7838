"""Usage per key, per model and per day: requests, errors, prompt and completion tokens, time
to first token (sum and count, so averages are exact).

A finished request is added to a counter in memory; the counters are written in batches
(one upsert per day, key and model), shortly after, off the request path. Reading writes what
is pending first, so a read that follows a request finds it; shutting down writes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.sqlite import insert

from modelyard.clock import utcnow
from modelyard.store.db import Database
from modelyard.store.tables import UsageRow

log = logging.getLogger("modelyard.access.usage")
WRITE_AFTER_S = 1.0
GROUPS = ("day", "key", "model")
LOCAL = "(local)"  # how usage of local callers without a key is listed


@dataclass
class UsageCounts:
    """What one day, key and model added up to."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms_sum: float = 0.0
    ttft_count: int = 0

    def add(self, other: UsageCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def wire(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["ttft_ms_sum"] = round(self.ttft_ms_sum, 3)
        values["ttft_ms_avg"] = (
            round(self.ttft_ms_sum / self.ttft_count, 1) if self.ttft_count else None
        )
        return values


@dataclass(frozen=True)
class UsageReportRow:
    """One row of a usage report: the totals of the grouping columns the caller chose (a
    column not grouped by is None, and is left out of the wire form)."""

    counts: UsageCounts
    day: str | None = None
    key_prefix: str | None = None  # "(local)" for keyless local callers
    key_id: str | None = None  # None for keyless local callers too
    model: str | None = None

    def wire(self) -> dict[str, Any]:
        item: dict[str, Any] = {}
        if self.day is not None:
            item["day"] = self.day
        if self.key_prefix is not None:
            item["key_id"] = self.key_id
            item["key_prefix"] = self.key_prefix
        if self.model is not None:
            item["model"] = self.model
        return {**item, **self.counts.wire()}


@dataclass(frozen=True)
class UsageFilter:
    since: date | None = None
    until: date | None = None
    key: str = ""  # a key's id or prefix; "(local)" for keyless local callers
    model: str = ""  # the qualified name, or an fnmatch-free part of it


class UsageLog:
    """Counts what the gateway answered, writes it in batches."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: dict[tuple[str, str, str, str], UsageCounts] = {}
        self._writer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record(
        self,
        *,
        key_id: str,
        key_prefix: str,
        model: str,
        counts: UsageCounts,
        at: datetime | None = None,
    ) -> None:
        day = (at or utcnow()).date().isoformat()
        slot = self._pending.setdefault((day, key_id, model, key_prefix), UsageCounts())
        slot.add(counts)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_soon())

    async def _write_soon(self) -> None:
        await asyncio.sleep(WRITE_AFTER_S)
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception:  # usage must never break a request; the log says what was lost
                log.exception("could not write the usage of %d slots", len(batch))

    def _write(self, batch: dict[tuple[str, str, str, str], UsageCounts]) -> None:
        with self.db.session() as s:
            for (day, key_id, model, prefix), counts in batch.items():
                values = {f.name: getattr(counts, f.name) for f in fields(counts)}
                statement = insert(UsageRow).values(
                    day=day, key_id=key_id, model=model, key_prefix=prefix, **values
                )
                s.execute(
                    statement.on_conflict_do_update(
                        index_elements=["day", "key_id", "model"],
                        set_={n: getattr(UsageRow, n) + v for n, v in values.items()},
                    )
                )

    async def rows(self, where: UsageFilter, group: Sequence[str]) -> list[UsageReportRow]:
        """Totals per the ``group`` columns (some of day, key, model), in that order."""
        await self.flush()
        return await asyncio.to_thread(self._read, where, tuple(g for g in GROUPS if g in group))

    def _read(self, where: UsageFilter, group: tuple[str, ...]) -> list[UsageReportRow]:
        columns = {
            "day": UsageRow.day,
            "key": UsageRow.key_id,
            "model": UsageRow.model,
        }
        sums = [func.sum(getattr(UsageRow, f.name)).label(f.name) for f in fields(UsageCounts)]
        keyed = [columns[g] for g in group]
        extra = [func.max(UsageRow.key_prefix).label("key_prefix")] if "key" in group else []
        query = select(*keyed, *extra, *sums)
        if where.since is not None:
            query = query.where(UsageRow.day >= where.since.isoformat())
        if where.until is not None:
            query = query.where(UsageRow.day <= where.until.isoformat())
        if where.key:
            wanted = "" if where.key == LOCAL else where.key
            query = query.where((UsageRow.key_id == wanted) | (UsageRow.key_prefix == wanted))
        if where.model:
            query = query.where(UsageRow.model.contains(where.model, autoescape=True))
        if keyed:
            query = query.group_by(*keyed).order_by(*keyed)
        with self.db.session() as s:
            found: list[UsageReportRow] = []
            for row in s.execute(query):
                mapping = row._mapping
                if mapping["requests"] is None:  # no rows at all, ungrouped
                    continue
                counts = UsageCounts(**{f.name: mapping[f.name] for f in fields(UsageCounts)})
                found.append(
                    UsageReportRow(
                        counts,
                        day=mapping["day"] if "day" in group else None,
                        key_prefix=mapping["key_prefix"] or LOCAL if "key" in group else None,
                        key_id=mapping["key_id"] or None if "key" in group else None,
                        model=mapping["model"] if "model" in group else None,
                    )
                )
            return found

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.flush()
