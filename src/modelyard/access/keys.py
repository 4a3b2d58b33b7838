"""modelyard's own API keys: stored as SHA-256 hashes, with scopes (admin, read, inference)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from modelyard.clock import iso, utcnow
from modelyard.errors import InvalidInput, NotFound
from modelyard.store.db import Database
from modelyard.store.tables import ApiKeyRow

SCOPES = ("admin", "read", "inference")


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    name: str
    scopes: tuple[str, ...]

    def allows(self, scope: str) -> bool:
        s = self.scopes
        return "admin" in s or scope in s or (scope == "read" and "inference" in s)


LOCAL = Principal("local", SCOPES)


def hash_key(key: str) -> str:
    """Keys are random 256-bit tokens, so one SHA-256 suffices (no password stretching)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Create, list, revoke and look up keys. ``config_key`` (MODELYARD_API_KEY) is admin."""

    def __init__(self, db: Database, config_key: str = "") -> None:
        self.db = db
        self.config_key = config_key
        self._lock = threading.Lock()
        self._has_rows: bool | None = None

    def known_required(self) -> bool | None:
        """``required()`` without touching the store: None until it has been read once."""
        return True if self.config_key else self._has_rows

    def required(self) -> bool:
        """Whether requests must carry a key (any key exists)."""
        if self.config_key:
            return True
        with self._lock:
            if self._has_rows is None:
                with self.db.session() as s:
                    self._has_rows = s.query(ApiKeyRow.id).first() is not None
            return self._has_rows

    def lookup(self, token: str) -> Principal | None:
        if self.config_key and hmac.compare_digest(token, self.config_key):
            return Principal("config-key", SCOPES)
        with self.db.session() as s:
            row = s.query(ApiKeyRow).filter_by(key_hash=hash_key(token)).first()
            if row is None:
                return None
            row.last_used_at = utcnow()
            return Principal(row.name, tuple(row.scopes))

    def create(self, name: str, scopes: list[str]) -> tuple[str, dict[str, Any]]:
        """A new key: the secret is returned once, only its hash is kept."""
        bad = [s for s in scopes if s not in SCOPES]
        if not name.strip() or not scopes or bad:
            raise InvalidInput(
                f"invalid key request (name {name!r}, scopes {scopes})",
                code="invalid_api_key_request",
                hint=f"Give a name and scopes from {', '.join(SCOPES)}.",
            )
        secret = "my_" + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=uuid.uuid4().hex,
            name=name.strip()[:128],
            prefix=secret[:8],
            key_hash=hash_key(secret),
            scopes=scopes,
        )
        with self.db.session() as s:
            s.add(row)
        with self._lock:
            self._has_rows = True
        return secret, self.public(row)

    def list(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [self.public(r) for r in s.query(ApiKeyRow).order_by(ApiKeyRow.created_at)]

    def delete(self, key_id: str) -> None:
        with self.db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"there is no API key {key_id!r}", code="api_key_not_found")
            s.delete(row)
        with self._lock:
            self._has_rows = None

    @staticmethod
    def public(row: ApiKeyRow) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "prefix": row.prefix,
            "scopes": list(row.scopes),
            "created_at": iso(row.created_at),
            "last_used_at": iso(row.last_used_at),
        }
