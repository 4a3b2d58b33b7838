"""Time helpers: timezone-aware UTC everywhere, RFC 3339 on the wire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime (as SQLite returns them) is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@overload
def iso(value: datetime) -> str: ...


@overload
def iso(value: datetime | None) -> str | None: ...


def iso(value: datetime | None) -> str | None:
    """RFC 3339 with 'Z'; naive datetimes are taken as UTC."""
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")
