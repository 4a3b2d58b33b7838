"""Download tasks in the ``downloads`` table, and model sources in ``model_sources``.

The manager calls these from one writer thread, in order, so the event loop never waits on
SQLite (a WAL checkpoint fsyncs, which can take long while downloads fill the disk).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update

from modelyard.clock import utcnow
from modelyard.downloads.specs import DownloadRequest
from modelyard.downloads.tasks import DownloadColumns, Task
from modelyard.store.db import Database
from modelyard.store.tables import DownloadRow, ModelSourceRow

SourceKey = tuple[str, str, str]  # (provider, instance_id, model name), as the catalog keys


class DownloadStore:
    """Reads and writes of download tasks; only the server process writes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self) -> list[Task]:
        """Every task, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(select(DownloadRow).order_by(DownloadRow.created_at)).all()
            return [Task.from_row(row) for row in rows]

    def insert(self, values: DownloadColumns) -> None:
        with self.db.session() as s:
            s.add(DownloadRow(**values))

    def update(self, task_id: str, values: DownloadColumns) -> None:
        with self.db.session() as s:
            s.execute(update(DownloadRow).where(DownloadRow.id == task_id).values(**values))

    def complete(
        self,
        task_id: str,
        values: DownloadColumns,
        key: SourceKey,
        source: str,
        request: DownloadRequest,
    ) -> None:
        """Mark a task completed and remember where its model came from (the request it was
        given), in one transaction."""
        # Recreate checks the free disk again: ``force`` is not kept.
        recorded = request.model_dump(exclude_defaults=True, exclude={"force"})
        with self.db.session() as s:
            s.execute(update(DownloadRow).where(DownloadRow.id == task_id).values(**values))
            row = s.get(ModelSourceRow, key)
            if row is None:
                provider, instance_id, name = key
                s.add(
                    ModelSourceRow(
                        provider=provider,
                        instance_id=instance_id,
                        name=name,
                        source=source,
                        request=recorded,
                    )
                )
            else:
                row.source, row.request, row.recorded_at = source, recorded, utcnow()

    def delete(self, task_id: str) -> None:
        with self.db.session() as s:
            s.execute(delete(DownloadRow).where(DownloadRow.id == task_id))
