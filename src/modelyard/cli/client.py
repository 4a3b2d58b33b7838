"""A typed HTTP client for a running modelyard server (the CLI's only way to change state)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from modelyard.access.private_files import read_key_file
from modelyard.config import Settings


class ClientError(Exception):
    """An error answer (problem+json) or an unreachable server, ready to print."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        hint: str = "",
        status: int = 0,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint
        self.status = status
        self.errors = errors or []  # a validation problem's ``errors`` (loc, msg, type)


# A server bound to every address is reached on the loopback address of the same family.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}


def server_url(settings: Settings | None = None) -> str:
    """MODELYARD_URL, else the host and port the server is configured with."""
    if os.environ.get("MODELYARD_URL"):
        return os.environ["MODELYARD_URL"].rstrip("/")
    host = settings.host if settings else os.environ.get("MODELYARD_HOST", "127.0.0.1")
    port = settings.port if settings else int(os.environ.get("MODELYARD_PORT", "8050"))
    host = _ANY_ADDRESS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    scheme = "https" if settings and settings.tls else "http"
    return f"{scheme}://{host}:{port}"


def server_trust(settings: Settings | None) -> ssl.SSLContext | bool:
    """What the client verifies the server's certificate with: the system's CAs (and
    ``SSL_CERT_FILE``), plus modelyard's local CA when the certificate is one it made."""
    ca = settings.local_ca if settings else None
    if ca is None:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca)
    return context


def _verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under httpx's and httpcore's wrappers, if one did."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__context__
    return cause


class Client:
    """Thin wrapper over httpx that turns problem+json answers into ClientError."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        timeout: float = 30.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, verify=verify)

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> Client:
        """MODELYARD_URL (else the settings' host and port) and a key: the configured one,
        else the one ``serve`` wrote for the CLI (when this user may read it)."""
        key = settings.api_key if settings else os.environ.get("MODELYARD_API_KEY", "")
        if not key and settings is not None:
            key = read_key_file(settings.cli_key_path)
        return cls(server_url(settings), key, verify=server_trust(settings))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise ClientError(
                f"modelyard at {self.base_url} did not answer in time", code="timeout"
            ) from exc
        return self._decode(resp)

    def _unreachable(self, exc: httpx.ConnectError) -> ClientError:
        untrusted = _verification_error(exc)
        if untrusted is not None:
            return ClientError(
                f"the certificate of {self.base_url} is not trusted: {untrusted.verify_message}",
                code="certificate_untrusted",
                hint="Trust the CA that signed it (SSL_CERT_FILE), or keep the certificate "
                "'modelyard certs create' made beside its ca.pem.",
            )
        return ClientError(
            f"modelyard is not running at {self.base_url}",
            code="server_unreachable",
            hint="Start it with 'modelyard serve' (or 'make run'), or set MODELYARD_URL.",
        )

    def _not_modelyard(self, resp: httpx.Response) -> ClientError:
        kind = resp.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        return ClientError(
            f"the server at {self.base_url} does not look like modelyard "
            f"(it answered HTTP {resp.status_code} with {kind}, not a modelyard answer)",
            code="not_modelyard",
            hint="Check MODELYARD_URL (or the config file's host and port): "
            "it should point at a running 'modelyard serve'.",
            status=resp.status_code,
        )

    def _decode(self, resp: httpx.Response) -> Any:
        if resp.status_code == 204:
            return None
        if 300 <= resp.status_code < 400:
            raise ClientError(
                f"unexpected redirect (HTTP {resp.status_code}) to {resp.headers.get('location')}",
                code="unexpected_redirect",
                hint="Check MODELYARD_URL: it should point at modelyard itself.",
                status=resp.status_code,
            )
        try:
            body = resp.json()
        except ValueError:
            if resp.status_code >= 400 or resp.content.strip():
                raise self._not_modelyard(resp) from None
            return None
        if resp.status_code >= 400:
            if not isinstance(body, dict) or "code" not in body:
                raise self._not_modelyard(resp)  # modelyard's errors are problem+json
            raise ClientError(
                str(body.get("detail") or body.get("title") or f"HTTP {resp.status_code}"),
                code=str(body["code"]),
                hint=str(body.get("hint", "")),
                status=resp.status_code,
                errors=[e for e in body.get("errors") or [] if isinstance(e, dict)],
            )
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def text(self, path: str, **params: Any) -> str:
        """A text answer (a CSV export); errors raise ClientError as for JSON."""
        try:
            resp = self.http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from exc
        if resp.status_code >= 400:
            self._decode(resp)
        return resp.text

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    @contextmanager
    def stream(self, method: str, path: str, body: Any = None) -> Iterator[httpx.Response]:
        """A streamed response (e.g. chat's text/event-stream); errors raise ClientError."""
        try:
            with self.http.stream(method, path, json=body, timeout=None) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._decode(resp)
                yield resp
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from exc
