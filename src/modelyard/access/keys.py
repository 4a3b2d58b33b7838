"""modelyard's own API keys: stored as SHA-256 hashes, with scopes (admin, read, inference)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
    """Who is calling. ``subject`` identifies them for limits (a key, a local user)."""

    name: str
    scopes: tuple[str, ...]
    subject: str = ""

    def allows(self, scope: str) -> bool:
        s = self.scopes
        return "admin" in s or scope in s or (scope == "read" and "inference" in s)


def hash_key(key: str) -> str:
    """Keys are random 256-bit tokens, so one SHA-256 suffices (no password stretching)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


KEY_PREFIX = "my_"  # every key modelyard makes starts so


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeys:
    """Create, list, revoke and look up keys. ``config_key`` (MODELYARD_API_KEY) is admin, and
    so is ``cli_key``, the key ``serve`` makes at each start for the CLI (SPEC §12)."""

    def __init__(self, db: Database, config_key: str = "") -> None:
        self.db = db
        self.config_key = config_key
        self.cli_key = new_secret()

    def builtin(self, token: str) -> Principal | None:
        """The configured key's or the CLI key's principal (in memory, no store access).

        Compared as bytes: a header may hold any octets, and compare_digest refuses str that
        is not ASCII."""
        given = token.encode("utf-8", "surrogateescape")
        for secret, name in ((self.config_key, "config-key"), (self.cli_key, "cli")):
            if secret and hmac.compare_digest(given, secret.encode()):
                return Principal(name, SCOPES, subject=name)
        return None

    def stored(self, token: str) -> Principal | None:
        """The principal of a key from the store (blocking: call it in a thread)."""
        with self.db.session() as s:
            row = s.query(ApiKeyRow).filter_by(key_hash=hash_key(token)).first()
            if row is None:
                return None
            row.last_used_at = utcnow()
            return Principal(row.name, tuple(row.scopes), subject=f"key:{row.id}")

    def create(self, name: str, scopes: list[str]) -> tuple[str, dict[str, Any]]:
        """A new key: the secret is returned once, only its hash is kept."""
        bad = [s for s in scopes if s not in SCOPES]
        if not name.strip() or not scopes or bad:
            raise InvalidInput(
                f"invalid key request (name {name!r}, scopes {scopes})",
                code="invalid_api_key_request",
                hint=f"Give a name and scopes from {', '.join(SCOPES)}.",
            )
        secret = new_secret()
        row = ApiKeyRow(
            id=uuid.uuid4().hex,
            name=name.strip()[:128],
            prefix=secret[:8],
            key_hash=hash_key(secret),
            scopes=scopes,
        )
        with self.db.session() as s:
            s.add(row)
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
