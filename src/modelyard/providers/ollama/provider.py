"""Ollama through the official ``ollama`` client. Recognised by ``GET /api/version`` returning
a version string; models from ``/api/tags`` merged with ``/api/ps`` (what is loaded, and its
memory); an empty generate request loads a model, ``keep_alive: 0`` unloads it,
``DELETE /api/delete`` removes it; chat on ``/api/chat``, embeddings on ``/api/embed``.
modelyard can run it (``ollama serve``, listening where the base URL points).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

import httpx
import ollama

from modelyard.chat.types import ChatOptions, Piece, Target, Turn
from modelyard.clock import iso
from modelyard.config import Settings
from modelyard.errors import InvalidInput, ListingError, NotFound, UpstreamError
from modelyard.instance_config import InstanceConfig
from modelyard.models.types import LoadedFigures, ModelEntry, ModelStatus
from modelyard.providers.base import (
    ApiPaths,
    ApiProbe,
    Capabilities,
    Provider,
    ProviderState,
    RuntimeCheck,
    describe_http,
    json_or_none,
    model_not_found,
    unreachable,
    wrong_service,
)
from modelyard.providers.clients import Clients
from modelyard.providers.failures import status_error, timed_out, upstream_failed
from modelyard.providers.failures import unreachable as chat_unreachable
from modelyard.providers.listing import guess_mode, int_or_none, server_time
from modelyard.providers.ollama import pull
from modelyard.providers.ollama.manifest import pulled_model
from modelyard.providers.ollama.names import ollama_display_name, validate_ollama_name
from modelyard.providers.programs import find_program
from modelyard.providers.pull import LayerTracker
from modelyard.runtimes.processes import LaunchSpec
from modelyard.validation import validate_base_url

OLLAMA = "ollama"  # the program
_MISSING = "Install Ollama from https://ollama.com/download or set MODELYARD_OLLAMA_BINARY"


class OllamaProvider(Provider):
    kind: ClassVar[str] = "ollama"
    label: ClassVar[str] = "Ollama"
    capabilities: ClassVar[Capabilities] = Capabilities(
        manageable=True,
        loads_models=True,
        deletes_models=True,
        pulls=True,
        embeddings=True,
        owns_memory=True,
    )
    api_paths: ClassVar[ApiPaths] = ApiPaths(openai="/v1", ollama="/api")
    start_hint: ClassVar[str] = "Start Ollama ('ollama serve')"
    reports_context: ClassVar[bool] = True
    loads_on_demand: ClassVar[bool] = True

    def default_instances(self, settings: Settings) -> list[InstanceConfig]:
        return [InstanceConfig(provider=self.kind, id="default", base_url="http://127.0.0.1:11434")]

    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        resp = await http.get(f"{inst.base_url}/api/version")
        body = json_or_none(resp)
        version = body.get("version") if isinstance(body, dict) else None
        if resp.status_code != 200 or not isinstance(version, str):
            # Ollama's own failures are 5xx with {"error": ...}; LM Studio answers 200 with one.
            if (
                resp.status_code >= 500
                and isinstance(body, dict)
                and isinstance(body.get("error"), str)
            ):
                return ApiProbe(
                    responded=True,
                    state=ProviderState.DEGRADED,
                    reason_code="bad_response",
                    hint=f"Ollama answered {describe_http(resp)}: {body['error']}. See its log.",
                )
            return wrong_service(inst, resp, "Ollama")
        ps = json_or_none(await http.get(f"{inst.base_url}/api/ps"))
        models = ps.get("models") if isinstance(ps, dict) else None
        return ApiProbe(
            responded=True,
            ok=True,
            version=version,
            models_loaded=len(models) if isinstance(models, list) else None,
        )

    # -- models ---------------------------------------------------------------------------

    def check_name(self, name: str) -> str:
        return validate_ollama_name(name)

    def catalog_name(self, name: str) -> str:
        return ollama_display_name(name)

    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        try:
            async with _client(inst, timeout) as client:
                tags, ps = await asyncio.gather(client.list(), client.ps())
        except ollama.ResponseError as exc:
            raise ListingError(
                f"{inst.key} answered {exc.status_code}: {exc.error}", code="upstream_error"
            ) from exc
        except (ConnectionError, httpx.HTTPError) as exc:
            raise ListingError(f"{inst.key} cannot be reached: {exc}", code="unreachable") from exc
        loaded = {
            (m.model or m.name or ""): LoadedFigures(
                size=int(m.size or 0),
                size_vram=int(m.size_vram or 0),
                expires_at=iso(server_time(m.expires_at)),
                context_length=m.context_length,
            )
            for m in ps.models
        }
        return [self._entry(inst, m, loaded.get(m.model or "")) for m in tags.models]

    def _entry(
        self, inst: InstanceConfig, m: ollama.ListResponse.Model, state: LoadedFigures | None
    ) -> ModelEntry:
        name = m.model or ""
        details = m.details
        family = details.family if details else None
        return ModelEntry(
            provider=inst.provider,
            instance_id=inst.id,
            name=name,
            size=int(m.size) if m.size is not None else None,
            family=family,
            parameter_size=details.parameter_size if details else None,
            quantization=details.quantization_level if details else None,
            format=details.format if details else None,
            digest=m.digest,
            modified_at=server_time(m.modified_at),
            mode=guess_mode(name, family),
            source=self.kind,
            status=ModelStatus.LOADED if state else ModelStatus.AVAILABLE,
            context_length=state.get("context_length") if state else None,
            loaded=state,
            meta={"families": list(details.families or []) if details else []},
            refetch=self.pull_request(name, inst.id),
        )

    async def load(
        self, http: httpx.AsyncClient, inst: InstanceConfig, name: str, ctx_size: int | None
    ) -> None:
        """An empty generate request."""
        await _call(inst, name, _timeout(http), "load", lambda c: c.generate(model=name))

    async def unload(self, http: httpx.AsyncClient, inst: InstanceConfig, name: str) -> None:
        """``keep_alive: 0``; not an error when it was not loaded."""
        await _call(
            inst, name, _timeout(http), "unload", lambda c: c.generate(model=name, keep_alive=0)
        )

    async def delete(self, http: httpx.AsyncClient, inst: InstanceConfig, name: str) -> None:
        """The model and its unused blobs."""
        await _call(inst, name, _timeout(http), "delete", lambda c: c.delete(name))

    async def pull(
        self,
        inst: InstanceConfig,
        name: str,
        progress: LayerTracker,
        *,
        on_update: Callable[[], None],
        log: Callable[[str], None],
        stall_timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        client = pull.pull_client(inst.base_url, inst.resolved_api_key(), connect_timeout_s)
        async with client:
            await pull.pull(
                client,
                name,
                progress,
                on_update=on_update,
                log=log,
                stall_timeout_s=stall_timeout_s,
            )
            # The stream leaves out layers that finished between two ticks: the model's own
            # record has the figures it really ended with.
            pulled, why = await pulled_model(client, inst.base_url, name)
        if pulled is None:
            log(f"the totals stay as the stream showed them: {why}")
            return
        progress.settle(pulled.size, pulled.blobs)
        blobs = f"{pulled.blobs} blobs" if pulled.blobs else "blobs as the stream showed them"
        log(f"settled on Ollama's record: {pulled.size} bytes, {blobs}")
        on_update()

    # -- chat -----------------------------------------------------------------------------

    async def chat(
        self, clients: Clients, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        params: dict[str, Any] = {
            "temperature": options.temperature,
            "top_p": options.top_p,
            "num_predict": options.max_tokens,
            "num_ctx": options.ctx_size,
        }
        messages = [{"role": t.role, "content": t.content} for t in turns]
        with _translated(target):
            parts = await clients.ollama_client(target.base_url).chat(
                model=target.model,
                messages=messages,
                stream=True,
                options={k: v for k, v in params.items() if v is not None},
            )
            async with aclosing(cast(AsyncGenerator[ollama.ChatResponse, None], parts)) as gen:
                async for part in gen:
                    yield _piece(part)

    async def embed(
        self, clients: Clients, target: Target, texts: Sequence[str]
    ) -> list[list[float]]:
        with _translated(target):
            answer = await clients.ollama_client(target.base_url).embed(
                model=target.model, input=list(texts)
            )
        return [list(vector) for vector in answer.embeddings]

    async def will_load(self, http: httpx.AsyncClient, target: Target) -> bool:
        """Installed (``/api/tags``) but not loaded (``/api/ps``)."""
        ps, tags = await asyncio.gather(
            http.get(f"{target.base_url}/api/ps"), http.get(f"{target.base_url}/api/tags")
        )
        wanted = _same_name(target.model)

        def listed(resp: httpx.Response) -> bool:
            names = {str(m.get("name") or m.get("model")) for m in resp.json()["models"]}
            return wanted in {_same_name(n) for n in names}

        return listed(tags) and not listed(ps)

    async def loaded_context(self, http: httpx.AsyncClient, target: Target) -> int | None:
        models = (await http.get(f"{target.base_url}/api/ps")).json()["models"]
        wanted = _same_name(target.model)
        for entry in models:
            if _same_name(str(entry.get("name") or entry.get("model"))) == wanted:
                return int_or_none(entry.get("context_length"))
        return None

    async def model_context(self, http: httpx.AsyncClient, target: Target) -> int | None:
        resp = await http.post(f"{target.base_url}/api/show", json={"model": target.model})
        info = resp.json().get("model_info") or {}
        for key, value in info.items():
            if key.endswith(".context_length"):
                return int_or_none(value)
        return None

    # -- running it -----------------------------------------------------------------------

    def launch_spec(self, settings: Settings, inst: InstanceConfig) -> LaunchSpec:
        return ollama_serve_spec(inst.key, inst.base_url, settings.ollama_binary)

    def container_command(
        self, settings: Settings, inst: InstanceConfig, *, host: str, port: int, models_mount: str
    ) -> LaunchSpec:
        bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return LaunchSpec(key=inst.key, argv=["serve"], env={"OLLAMA_HOST": bound}, port=port)

    def binary_missing(self, settings: Settings, inst: InstanceConfig) -> str | None:
        if inst.command or find_ollama(settings.ollama_binary) is not None:
            return None
        return f"No 'ollama' binary found. {_MISSING} to its path."

    def runtime_check(self, settings: Settings, needed_by: list[str]) -> RuntimeCheck:
        binary = find_ollama(settings.ollama_binary)
        if binary is None and not needed_by:
            return RuntimeCheck(
                False,
                "ollama binary: not found (only needed for managed Ollama instances)",
                required=False,
            )
        needed = f" (needed by {', '.join(needed_by)})" if needed_by else ""
        return RuntimeCheck(
            binary is not None,
            f"ollama binary: {binary or 'not found'}{needed}",
            f"{_MISSING}.",
        )


def find_ollama(configured: str = "") -> str | None:
    """The ``ollama`` program: configured, else on PATH, else None."""
    return find_program(configured, OLLAMA, "MODELYARD_OLLAMA_BINARY")


def ollama_serve_spec(key: str, base_url: str, configured: str = "") -> LaunchSpec:
    """``ollama serve`` listening where ``base_url`` points (through ``OLLAMA_HOST``)."""
    binary = find_ollama(configured)
    if binary is None:
        raise NotFound(
            "Ollama is not installed: no 'ollama' program was found",
            code="binary_not_found",
            hint=f"{_MISSING} to the path of the ollama program.",
        )
    parts = urlsplit(validate_base_url(base_url))
    if parts.scheme != "http":
        raise InvalidInput(
            f"a managed Ollama cannot serve {parts.scheme}://",
            code="unsupported_scheme",
            hint="Use an http:// base URL: 'ollama serve' speaks plain HTTP.",
        )
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80  # what the URL means, and what Ollama itself assumes for http://
    bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return LaunchSpec(key=key, argv=[binary, "serve"], env={"OLLAMA_HOST": bound}, port=port)


# -- the SDK ----------------------------------------------------------------------------------


def _client(inst: InstanceConfig, timeout: float | httpx.Timeout | None) -> ollama.AsyncClient:
    key = inst.resolved_api_key()
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return ollama.AsyncClient(host=inst.base_url, timeout=timeout, headers=headers)


def _timeout(http: httpx.AsyncClient) -> httpx.Timeout:
    return http.timeout


async def _call(
    inst: InstanceConfig,
    name: str,
    timeout: httpx.Timeout,
    what: str,
    call: Callable[[ollama.AsyncClient], Any],
) -> None:
    """One load, unload or delete; Ollama's errors become modelyard's, here in one place."""
    try:
        async with _client(inst, timeout) as client:
            await call(client)
    except ollama.ResponseError as exc:
        if exc.status_code == 404:
            raise model_not_found(name, inst) from exc
        raise UpstreamError(
            f"Ollama refused to {what} {name}: {exc.error} (HTTP {exc.status_code})",
            code="upstream_error",
        ) from exc
    except (ConnectionError, httpx.ConnectError) as exc:
        raise unreachable(inst, exc) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"Ollama failed to {what} {name}: {exc!r}") from exc


def _piece(part: ollama.ChatResponse) -> Piece:
    message = part.message
    text = message.content or "" if message is not None else ""
    thinking = bool(message is not None and message.thinking)
    if not part.done:
        return Piece(text=text, thinking=thinking and not text)
    return Piece(
        text=text,
        prompt_tokens=part.prompt_eval_count,
        completion_tokens=part.eval_count,
        finish_reason=part.done_reason or "stop",
    )


@contextmanager
def _translated(target: Target) -> Iterator[None]:
    """The client's errors while answering as ``ChatError`` with a reason code."""
    try:
        yield
    except ollama.ResponseError as exc:
        if exc.status_code == -1:  # an {"error": ...} line in the middle of the stream
            raise upstream_failed(exc.error, target) from exc
        raise status_error(exc.status_code, exc.error, target) from exc
    except httpx.TimeoutException as exc:
        raise timed_out(target) from exc
    except (httpx.TransportError, ConnectionError) as exc:
        raise chat_unreachable(target, exc) from exc


def _same_name(name: str) -> str:
    return ollama_display_name(name).lower()
