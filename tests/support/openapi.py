"""Checks a real answer against the schema ``/openapi.json`` declares for its route: every key
the schema requires, no key it does not name, recursively."""

from __future__ import annotations

from typing import Any

import httpx


class Schemas:
    """The schemas of one ``/openapi.json``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def of(
        self, method: str, path: str, status: int, media_type: str = "application/json"
    ) -> dict[str, Any]:
        answer = self.spec["paths"][path][method]["responses"][str(status)]
        return dict(answer["content"][media_type]["schema"])

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def check(self, schema: dict[str, Any], value: Any, where: str = "$") -> None:
        """Fail when ``value`` has a shape ``schema`` does not describe."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            errors = []
            for option in schema["anyOf"]:
                try:
                    self.check(option, value, where)
                    return
                except AssertionError as exc:
                    errors.append(str(exc))
            raise AssertionError(f"{where}: no option fits: {errors}")
        kind = schema.get("type")
        if kind == "null" or (kind is None and value is None and not schema):
            assert value is None, f"{where}: {value!r} is not null"
        elif kind == "object" or "properties" in schema:
            assert isinstance(value, dict), f"{where}: {value!r} is not an object"
            props = schema.get("properties", {})
            missing = set(schema.get("required", [])) - set(value)
            assert not missing, f"{where}: missing {sorted(missing)}"
            for key, item in value.items():
                if key in props:
                    self.check(props[key], item, f"{where}.{key}")
                else:
                    extra = schema.get("additionalProperties")
                    assert extra not in (None, False), f"{where}: undocumented key {key!r}"
                    if isinstance(extra, dict):
                        self.check(extra, item, f"{where}.{key}")
        elif kind == "array":
            assert isinstance(value, list), f"{where}: {value!r} is not an array"
            for i, item in enumerate(value):
                self.check(schema.get("items", {}), item, f"{where}[{i}]")
        elif kind in ("string", "integer", "number", "boolean"):
            python: dict[str, type | tuple[type, ...]] = {
                "string": str,
                "integer": int,
                "number": (int, float),
                "boolean": bool,
            }
            assert isinstance(value, python[kind]), f"{where}: {value!r} is not {kind}"
            if "const" in schema:
                assert value == schema["const"], f"{where}: {value!r} is not {schema['const']!r}"
            if "enum" in schema:
                assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"


def checked(
    schemas: Schemas, resp: httpx.Response, method: str, path: str, status: int = 200
) -> Any:
    assert resp.status_code == status, resp.text
    schemas.check(schemas.of(method, path, status), resp.json(), f"{method.upper()} {path}")
    return resp.json()
