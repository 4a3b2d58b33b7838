"""The catalog's table: applying listings (with exact added/updated/removed counts), searching
in SQL on the indexed ``models`` table, and the public shape of a model.

Everything here is synchronous and quick; the async catalog calls it from worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, cast

from sqlalchemy import ColumnElement, Select, bindparam, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.clock import iso, utcnow
from modelyard.errors import Conflict
from modelyard.models.types import (
    ACTIVE,
    COLUMNS,
    FIELDS,
    ROW_STATUSES,
    LoadedFigures,
    Model,
    ModelEntry,
    ModelKey,
    ModelMeta,
    ModelPage,
    ModelState,
    ModelStatus,
    RefetchRequest,
    Scope,
    SyncError,
)
from modelyard.store.db import Database
from modelyard.store.tables import ModelRow, ModelSourceRow

SortField = Literal["name", "size", "modified", "status"]
SortOrder = Literal["asc", "desc"]

_COLUMNS = [getattr(ModelRow, name) for name in COLUMNS]
_COLUMNS.append(ModelRow.synced_at)
# The statements a start and a lookup of one model run, built once with bound parameters:
# building them per call costs several times what SQLite takes to run them.
_BY_KEY = (
    ModelRow.provider == bindparam("provider"),
    ModelRow.instance_id == bindparam("instance_id"),
    ModelRow.name == bindparam("name"),
)
_GET = select(*_COLUMNS).where(*_BY_KEY)
_GET_WITH_PK = select(ModelRow.pk, *_COLUMNS).where(*_BY_KEY)
_FIND = (
    select(*_COLUMNS)
    .where(ModelRow.provider == bindparam("provider"), ModelRow.name == bindparam("name"))
    .order_by(ModelRow.instance_id)
)
_SET_STATE = (
    update(ModelRow)
    .where(ModelRow.pk == bindparam("row_pk"))
    .values(status=bindparam("status"), loaded=bindparam("loaded"))
)
_SET_STATE_META = _SET_STATE.values(meta=bindparam("meta"))
_STATUS_RANK = case(
    {s.value: i for i, s in enumerate(ROW_STATUSES)}, value=ModelRow.status, else_=99
)


@dataclass
class SyncCounts:
    """What applying listings changed: the counts, and the ``model.state`` events it makes."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    changed_states: list[ModelState] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass(frozen=True)
class Listing:
    """One scope's models as just listed; ``entries`` None when the listing failed."""

    scope: Scope
    entries: list[ModelEntry] | None
    error: SyncError | None = None


@dataclass(frozen=True)
class SearchQuery:
    """``GET /api/models/search`` parameters, already validated."""

    q: str = ""
    status: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    instance_id: str = ""
    mode: str = ""
    min_size: int | None = None
    max_size: int | None = None
    sort: SortField = "name"
    order: SortOrder = "asc"
    page: int = 1
    page_size: int = 50


def public(values: Mapping[Any, Any]) -> Model:
    """A catalog row as the API shows it (times as RFC 3339)."""
    return Model(
        provider=values["provider"],
        instance_id=values["instance_id"],
        name=values["name"],
        size=values["size"],
        family=values["family"],
        parameter_size=values["parameter_size"],
        quantization=values["quantization"],
        format=values["format"],
        digest=values["digest"],
        modified_at=iso(values["modified_at"]),
        mode=values["mode"],
        source=values["source"],
        status=ModelStatus(values["status"]),
        context_length=values["context_length"],
        path=values["path"],
        loaded=values["loaded"],
        meta=values["meta"] or ModelMeta(),
        synced_at=iso(values["synced_at"]),
    )


def _new_row(entry: ModelEntry, synced_at: datetime) -> ModelRow:
    """The catalog row of a listed model."""
    return ModelRow(**{name: getattr(entry, name) for name in COLUMNS}, synced_at=synced_at)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _differs(row: ModelRow, entry: ModelEntry) -> bool:
    return any(_utc(getattr(row, name)) != _utc(getattr(entry, name)) for name in FIELDS)


def _state_of(row: ModelRow, status: ModelStatus | None = None) -> ModelState:
    """The ``model.state`` event of a row (``status``: instead of the row's)."""
    return ModelState(
        row.provider,
        row.instance_id,
        row.name,
        status or ModelStatus(row.status),
        cast(LoadedFigures | None, row.loaded),  # the JSON column, written from one
    )


class _StateChange(TypedDict, total=False):
    """The columns ``set_state`` writes (``meta`` only when it is given keys)."""

    status: str
    loaded: LoadedFigures | None
    meta: ModelMeta


class CatalogStore:
    """Reads and writes of the ``models`` and ``model_sources`` tables.

    ``version`` grows with every write to ``models``; only this server writes the store, so a
    reader may cache what it built from the table until the version changes.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._version = 0
        self._version_lock = threading.Lock()

    @property
    def version(self) -> int:
        return self._version

    def _bump(self) -> None:
        with self._version_lock:
            self._version += 1

    # -- sync ------------------------------------------------------------------------------

    def apply(
        self,
        listings: Iterable[Listing],
        *,
        live_scopes: set[Scope] | None,
        keep: Mapping[ModelKey, ModelStatus],
    ) -> SyncCounts:
        """Make the table match the listings. A failed listing keeps its rows but clears their
        loaded state (nobody can say they are loaded). ``live_scopes``: when given, rows of any
        other scope are removed (their instance is gone). ``keep``: placeholders of downloads
        in progress (key → status) survive their absence from a listing."""
        counts = SyncCounts()
        listed: set[Scope] = set()
        with self.db.session() as s:
            for listing in listings:
                listed.add(listing.scope)
                self._apply_scope(s, listing, keep, counts)
            if live_scopes is not None:
                for row in s.scalars(select(ModelRow)):
                    scope = (row.provider, row.instance_id)
                    if scope not in live_scopes and scope not in listed:
                        self._remove(s, row, counts)
        if counts.changed:
            self._bump()
        return counts

    def _apply_scope(
        self, s: Session, listing: Listing, keep: Mapping[ModelKey, ModelStatus], counts: SyncCounts
    ) -> None:
        provider, instance_id = listing.scope
        rows = {
            r.name: r
            for r in s.scalars(
                select(ModelRow).where(
                    ModelRow.provider == provider, ModelRow.instance_id == instance_id
                )
            )
        }
        if listing.entries is None:
            for row in rows.values():
                if row.status in ACTIVE:
                    self._set(row, status=ModelStatus.AVAILABLE.value, loaded=None)
                    counts.updated += 1
                    counts.changed_states.append(_state_of(row))
                else:
                    counts.unchanged += 1
            return
        now = utcnow()
        seen = set()
        known_sources = set(
            s.scalars(
                select(ModelSourceRow.name).where(
                    ModelSourceRow.provider == provider, ModelSourceRow.instance_id == instance_id
                )
            )
        )
        for entry in listing.entries:
            if entry.name in seen:
                continue  # a server listing one name twice
            seen.add(entry.name)
            existing = rows.pop(entry.name, None)
            if existing is None:
                s.add(_new_row(entry, now))
                counts.added += 1
                if entry.status is not ModelStatus.AVAILABLE:
                    counts.changed_states.append(entry.state())
                if entry.refetch is not None and entry.name not in known_sources:
                    self._record_first_seen(s, entry, entry.refetch)
            elif _differs(existing, entry):
                before = (existing.status, existing.loaded)
                self._set(existing, **{name: getattr(entry, name) for name in FIELDS})
                existing.synced_at = now
                counts.updated += 1
                if before != (existing.status, existing.loaded):
                    counts.changed_states.append(_state_of(existing))
            else:
                counts.unchanged += 1
        for name, row in rows.items():
            status = keep.get(ModelKey(provider, instance_id, name))
            if status is None:
                self._remove(s, row, counts)
            elif row.status != status:
                self._set(row, status=status.value)
                counts.updated += 1
                counts.changed_states.append(_state_of(row))
            else:
                counts.unchanged += 1

    @staticmethod
    def _set(row: ModelRow, **values: Any) -> None:
        for name, value in values.items():
            setattr(row, name, value)

    @staticmethod
    def _remove(s: Session, row: ModelRow, counts: SyncCounts) -> None:
        counts.changed_states.append(_state_of(row, ModelStatus.REMOVED))
        s.delete(row)
        counts.removed += 1

    @staticmethod
    def _record_first_seen(s: Session, entry: ModelEntry, request: RefetchRequest) -> None:
        """A model whose listing says how to fetch it again has a known source at once."""
        s.add(
            ModelSourceRow(
                provider=entry.provider,
                instance_id=entry.instance_id,
                name=entry.name,
                source=entry.source,
                request=dict(request),
            )
        )

    # -- single rows -----------------------------------------------------------------------

    def get(self, key: ModelKey) -> Model | None:
        """The public model, or None."""
        with self.db.engine.connect() as conn:
            row = conn.execute(_GET, _key_params(key)).mappings().first()
            return public(row) if row is not None else None

    def find(self, provider: str, name: str) -> list[Model]:
        """Every instance's model of that provider and name."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(_FIND, {"provider": provider, "name": name}).mappings()
            return [public(r) for r in rows]

    def set_state(
        self,
        key: ModelKey,
        status: ModelStatus,
        loaded: LoadedFigures | None,
        meta: ModelMeta | None = None,
    ) -> tuple[Model | None, ModelState | None]:
        """Change one row's status (and meta keys); (the model, its ``model.state`` event when
        the status or loaded details changed). 409 ``invalid_model_transition`` when the row's
        status cannot become ``status``. One SELECT and at most one UPDATE, without the ORM: a
        start waits for this write before it answers."""
        with self.db.engine.begin() as conn:
            found = conn.execute(_GET_WITH_PK, _key_params(key)).mappings().first()
            if found is None:
                return None, None
            values = dict(found)
            pk = values.pop("pk")
            current = ModelStatus(values["status"])
            if not current.can_become(status):
                raise Conflict(
                    f"{key.name} is {current.value} and cannot become {status.value}",
                    code="invalid_model_transition",
                    hint="Wait until it is available (a sync shows it), then try again.",
                )
            before = (values["status"], values["loaded"])
            changes = _StateChange(status=status.value, loaded=loaded)
            if meta is not None:
                changes["meta"] = cast(ModelMeta, {**(values["meta"] or {}), **meta})
            changed = any(values[name] != value for name, value in changes.items())
            if changed:
                statement = _SET_STATE if meta is None else _SET_STATE_META
                conn.execute(statement, {"row_pk": pk, **changes})
                values.update(changes)
        if changed:
            self._bump()
        event = ModelState(*key, status, loaded) if before != (status.value, loaded) else None
        return public(values), event

    def add_placeholder(self, entry: ModelEntry) -> bool:
        """A row for a model being downloaded; False when the key already has a row."""
        try:
            with self.db.session() as s:
                if s.scalars(select(ModelRow.pk).where(*_BY_KEY), _key_params(entry.key)).first():
                    return False
                s.add(_new_row(entry, utcnow()))
        except IntegrityError:  # a concurrent event inserted the same key first
            return False
        self._bump()
        return True

    def delete(self, key: ModelKey) -> bool:
        """Drop one row (the model is gone); its recorded source stays."""
        with self.db.session() as s:
            row = s.scalars(select(ModelRow).where(*_BY_KEY), _key_params(key)).first()
            if row is None:
                return False
            s.delete(row)
        self._bump()
        return True

    # -- sources -----------------------------------------------------------------------------

    def source_of(self, key: ModelKey) -> tuple[str, RefetchRequest] | None:
        with self.db.session() as s:
            row = s.get(ModelSourceRow, key)
            if row is None:
                return None
            # Written only as a RefetchRequest (here) or a DownloadRequest's non-default
            # fields (downloads/store.py): the same keys. Not validated again: that would
            # reorder them.
            return row.source, cast(RefetchRequest, dict(row.request or {}))

    def sources(self, scope: Scope) -> dict[str, str]:
        """Model name → recorded source, for one scope."""
        with self.db.session() as s:
            rows = s.execute(
                select(ModelSourceRow.name, ModelSourceRow.source).where(
                    ModelSourceRow.provider == scope[0], ModelSourceRow.instance_id == scope[1]
                )
            )
            return {name: source for name, source in rows}

    # -- reads -------------------------------------------------------------------------------

    def list_all(self) -> list[Model]:
        """Every model, by provider, instance and name."""
        with self.db.session() as s:
            rows = s.execute(
                select(*_COLUMNS).order_by(
                    ModelRow.provider, ModelRow.instance_id, func.lower(ModelRow.name)
                )
            ).mappings()
            return [public(r) for r in rows]

    def active(self) -> list[Model]:
        """Models loaded or starting right now."""
        with self.db.session() as s:
            rows = s.execute(
                select(*_COLUMNS)
                .where(ModelRow.status.in_([s.value for s in ACTIVE]))
                .order_by(ModelRow.name)
            ).mappings()
            return [public(r) for r in rows]

    def names(self, providers: Iterable[str]) -> list[ModelKey]:
        """The key of every model of these providers."""
        with self.db.session() as s:
            rows = s.execute(
                select(ModelRow.provider, ModelRow.instance_id, ModelRow.name).where(
                    ModelRow.provider.in_(list(providers))
                )
            )
            return [ModelKey(p, i, n) for p, i, n in rows]

    def search(self, query: SearchQuery) -> ModelPage:
        """One page of matching models and the total number of matches."""
        conditions = _conditions(query)
        stmt: Select[Any] = select(*_COLUMNS).where(*conditions)
        stmt = stmt.order_by(*_ordering(query.sort, query.order))
        stmt = stmt.limit(query.page_size).offset((query.page - 1) * query.page_size)
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(ModelRow).where(*conditions)) or 0
            rows = [public(r) for r in s.execute(stmt).mappings()]
        return ModelPage(rows, total, query.page, query.page_size)


def _key_params(key: ModelKey) -> dict[str, str]:
    return {"provider": key.provider, "instance_id": key.instance_id, "name": key.name}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _source_condition(value: str) -> ColumnElement[bool]:
    """``hf`` and ``url`` match kinds of source; anything else matches exactly."""
    if value == "hf":
        return ModelRow.source.like("hf://%")
    if value == "url":
        return or_(ModelRow.source.like("http://%"), ModelRow.source.like("https://%"))
    return ModelRow.source == value


def _conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.q:
        where.append(ModelRow.name.ilike(f"%{_like_escape(query.q)}%", escape="\\"))
    if query.status:
        where.append(ModelRow.status.in_(query.status))
    if query.provider:
        where.append(ModelRow.provider.in_(query.provider))
    if query.source:
        where.append(or_(*(_source_condition(v) for v in query.source)))
    if query.instance_id:
        where.append(ModelRow.instance_id == query.instance_id)
    if query.mode:
        where.append(ModelRow.mode == query.mode)
    if query.min_size is not None:
        where.append(ModelRow.size >= query.min_size)
    if query.max_size is not None:
        where.append(ModelRow.size <= query.max_size)
    return where


def _ordering(sort: SortField, order: SortOrder) -> list[Any]:
    """Unknown sizes and dates go last either way; name, provider and instance break ties."""
    name = func.lower(ModelRow.name)
    column: Any = {
        "name": name,
        "size": ModelRow.size,
        "modified": ModelRow.modified_at,
        "status": _STATUS_RANK,
    }[sort]
    keys: list[Any] = []
    if sort in ("size", "modified"):
        keys.append(column.is_(None))
    keys.append(column.desc() if order == "desc" else column.asc())
    if sort != "name":
        keys.append(name)
    keys += [ModelRow.provider, ModelRow.instance_id, ModelRow.pk]
    return keys
