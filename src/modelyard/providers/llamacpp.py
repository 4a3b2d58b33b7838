"""llama.cpp's ``llama-server`` (PROTOCOLS.md §3): ``GET /health`` is 200 once the model is
loaded and 503 while it loads. modelyard runs it for managed instances and for the GGUF files
of the models directory, under the genuine ``llama-server`` when one is configured or on
PATH, else under the embedded runtime (``python -m modelyard.runtimes.llama_runner``,
llama.cpp's own server from the xllamacpp wheel), which takes the same flags. Host and port
are always passed explicitly: llama-server's default port has differed between builds.
Chat and embeddings speak the OpenAI API; ``/tokenize`` counts tokens exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from modelyard.chat.types import Target
from modelyard.config import Settings
from modelyard.errors import InvalidInput, ListingError
from modelyard.gguf.metadata import format_parameter_count
from modelyard.instance_config import InstanceConfig, ModelMode
from modelyard.models.types import ModelEntry, ModelStatus
from modelyard.providers import openai_api
from modelyard.providers.base import (
    ApiProbe,
    Capabilities,
    ProviderState,
    RuntimeCheck,
    TokenCounter,
    bearer,
    json_or_none,
    unauthorized,
    wrong_service,
)
from modelyard.providers.listing import data_list, get_json, int_or_none
from modelyard.providers.programs import find_program
from modelyard.runtimes.processes import LaunchSpec

LLAMA_SERVER = "llama-server"
EMBEDDED_RUNNER = "modelyard.runtimes.llama_runner"
CONTAINER_PROGRAM = "llama-server"  # a container image's own server program (its entrypoint)
_MODE_FLAGS = {
    ModelMode.LLM: [],
    ModelMode.EMBED: ["--embedding"],
    ModelMode.RERANK: ["--reranking"],
}
_MEMO_SIZE = 2048


class LlamaCppProvider(openai_api.SpeaksOpenAI):
    kind: ClassVar[str] = "llamacpp"
    aliases: ClassVar[tuple[str, ...]] = ("llama_cpp",)  # seed 000's provider key
    label: ClassVar[str] = "llama.cpp"
    capabilities: ClassVar[Capabilities] = Capabilities(
        manageable=True, embeddings=True, exact_tokens=True, runs_gguf=True
    )
    start_hint: ClassVar[str] = "Start llama-server"
    reports_context: ClassVar[bool] = True
    fixed_context: ClassVar[bool] = True  # a running server cannot grow its context

    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        resp = await http.get(f"{inst.base_url}/health", headers=bearer(api_key))
        body = json_or_none(resp)
        if resp.status_code == 503 and _error_type(body) == "unavailable_error":
            return ApiProbe(
                responded=True,
                state=ProviderState.STARTING,
                reason_code="loading_model",
                hint="llama-server is loading the model; it answers when loading is done.",
            )
        if resp.status_code == 401 and _error_type(body) == "authentication_error":
            return unauthorized(inst, bool(api_key))
        if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
            return wrong_service(inst, resp, "llama-server")
        version: str | None = None
        props = json_or_none(await http.get(f"{inst.base_url}/props", headers=bearer(api_key)))
        if isinstance(props, dict):
            build = props.get("build_info")
            version = build if isinstance(build, str) else None
        # In single-model mode a ready llama-server has exactly one model loaded.
        return ApiProbe(responded=True, ok=True, version=version, models_loaded=1)

    async def serving(self, http: httpx.AsyncClient, base_url: str) -> bool:
        try:
            resp = await http.get(f"{base_url}/health")
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def says_ready(self, line: str) -> bool:
        # llama-server and the embedded runner print it once the model is loaded (older
        # builds also when the port opens, before: then /health still answers 503).
        return "listening on" in line

    # -- models ---------------------------------------------------------------------------

    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        """``/v1/models``: one loaded model, or a router's models with states. Only once the
        server is recognised as llama-server and ready: many programs answer ``/v1/models``,
        and a model is loaded only when llama-server says so."""
        await self._require_ready(http, inst)
        body = await get_json(http, inst, "/v1/models", bearer(inst.resolved_api_key()))
        return [_entry(inst, item) for item in data_list(body, inst, "/v1/models")]

    async def _require_ready(self, http: httpx.AsyncClient, inst: InstanceConfig) -> None:
        try:
            probe = await self.probe(http, inst, inst.resolved_api_key())
        except httpx.TimeoutException as exc:
            raise ListingError(
                f"{inst.key} did not answer /health in time", code="timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise ListingError(f"{inst.key} cannot be reached: {exc}", code="unreachable") from exc
        if not probe.ok:
            state = probe.state.value if probe.state is not None else "not RUNNING"
            raise ListingError(
                f"{inst.key} is {state} ({probe.reason_code}): its models are not listed as loaded",
                code=probe.reason_code or "not_running",
                hint=probe.hint or "Check the instance's status.",
            )

    # -- chat -----------------------------------------------------------------------------

    async def loaded_context(self, http: httpx.AsyncClient, target: Target) -> int | None:
        props = (await http.get(f"{target.base_url}/props")).json()
        return int_or_none(props["default_generation_settings"]["n_ctx"])

    def token_counter(
        self, http: httpx.AsyncClient, target: Target, memo: OrderedDict[str, int]
    ) -> TokenCounter:
        return LlamaTokenizer(http, target.base_url, memo)

    # -- running it -----------------------------------------------------------------------

    def launch_spec(self, settings: Settings, inst: InstanceConfig) -> LaunchSpec:
        parts = urlsplit(inst.base_url)
        port = parts.port or 80
        argv = llama_server_argv(
            model=Path(inst.model),
            host=parts.hostname or "127.0.0.1",
            port=port,
            ctx_size=inst.ctx_size,
            alias=inst.id,
            mode=inst.mode,
            binary=find_llama_server(settings.llama_server),
        )
        return LaunchSpec(key=inst.key, argv=argv, env=_key_env(inst), port=port)

    def container_command(
        self, settings: Settings, inst: InstanceConfig, *, host: str, port: int, models_mount: str
    ) -> LaunchSpec:
        argv = llama_server_argv(
            model=settings.path_in_container(Path(inst.model), models_mount),
            host=host,
            port=port,
            ctx_size=inst.ctx_size,
            alias=inst.id,
            mode=inst.mode,
            binary=CONTAINER_PROGRAM,
        )
        return LaunchSpec(key=inst.key, argv=argv[1:], env=_key_env(inst), port=port)

    def file_command(
        self,
        settings: Settings,
        model: Path,
        *,
        host: str,
        port: int,
        ctx_size: int,
        alias: str,
        mode: ModelMode,
        in_container: bool = False,
    ) -> list[str]:
        return llama_server_argv(
            model=model,
            host=host,
            port=port,
            ctx_size=ctx_size,
            alias=alias,
            mode=mode,
            binary=CONTAINER_PROGRAM if in_container else find_llama_server(settings.llama_server),
        )

    def binary_missing(self, settings: Settings, inst: InstanceConfig) -> str | None:
        configured = settings.llama_server
        if configured and not find_llama_server(configured):
            return (
                f"MODELYARD_LLAMA_SERVER={configured} is not an executable; "
                "fix it or unset it to use the embedded runtime."
            )
        return None

    def runtime_check(self, settings: Settings, needed_by: list[str]) -> RuntimeCheck:
        binary = find_llama_server(settings.llama_server)
        if binary:
            return RuntimeCheck(True, f"llama.cpp runtime: llama-server at {binary}")
        try:
            import xllamacpp  # noqa: F401
        except ImportError:
            return RuntimeCheck(
                False, "no llama.cpp runtime", "pip install xllamacpp, or put llama-server on PATH."
            )
        return RuntimeCheck(
            True, "llama.cpp runtime: embedded (xllamacpp); no llama-server on PATH"
        )


class LlamaTokenizer:
    """Exact counts from llama.cpp's ``POST /tokenize``, remembered per text."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, memo: OrderedDict[str, int]):
        self.http = http
        self.base_url = base_url
        self.memo = memo

    async def count(self, texts: Sequence[str]) -> list[int]:
        return list(await asyncio.gather(*(self._one(t) for t in texts)))

    async def _one(self, text: str) -> int:
        key = self.base_url + hashlib.sha1(text.encode()).hexdigest()
        if key in self.memo:
            self.memo.move_to_end(key)
            return self.memo[key]
        try:
            resp = await self.http.post(
                f"{self.base_url}/tokenize", json={"content": text, "add_special": False}
            )
            tokens = resp.json().get("tokens") if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            tokens = None
        if not isinstance(tokens, list):
            # Its upper bound, not an estimate: a failed count must not overflow the server's
            # context (a byte-level tokenizer makes a token of nearly every byte).
            return len(text.encode()) + 1
        self.memo[key] = len(tokens)
        if len(self.memo) > _MEMO_SIZE:
            self.memo.popitem(last=False)
        return len(tokens)


def find_llama_server(configured: str = "") -> str | None:
    """The ``llama-server`` to run: configured, else on PATH, else None (the embedded runtime)."""
    return find_program(configured, LLAMA_SERVER, "MODELYARD_LLAMA_SERVER")


def runtime_name(binary: str | None) -> str:
    """How the runtime is shown to users."""
    return f"llama-server ({binary})" if binary else "embedded (xllamacpp)"


def llama_server_argv(
    *,
    model: Path,
    host: str,
    port: int,
    ctx_size: int = 0,
    alias: str | None = None,
    mode: ModelMode = ModelMode.LLM,
    threads: int | None = None,
    parallel: int = 1,
    binary: str | None,
) -> list[str]:
    """The command line serving ``model``; ``binary`` None selects the embedded runtime. A key
    goes in the environment as ``LLAMA_API_KEY``, never here."""
    if not 0 < port < 65536:
        raise InvalidInput(f"port {port} is out of range", code="invalid_port", hint="Use 1-65535.")
    if parallel < 1 or ctx_size < 0 or (threads is not None and threads < 1):
        raise InvalidInput(
            "parallel and threads must be at least 1 and ctx_size at least 0",
            code="invalid_runtime_option",
            hint="Use parallel >= 1, threads >= 1 (or unset) and ctx_size >= 0 (0: the model's).",
        )
    head = [binary] if binary else [sys.executable, "-m", EMBEDDED_RUNNER]
    argv = [*head, "-m", os.path.abspath(model), "--host", host, "--port", str(port)]
    argv += ["-np", str(parallel), "--metrics", *_MODE_FLAGS[mode]]
    if ctx_size > 0:
        argv += ["-c", str(ctx_size)]
    if alias:
        argv += ["-a", alias]
    if threads is not None:
        argv += ["-t", str(threads)]
    return argv


def _key_env(inst: InstanceConfig) -> dict[str, str] | None:
    """The instance's key for its server: llama-server and the embedded runtime read
    ``LLAMA_API_KEY``, so the key stays out of argv, which ``ps`` shows every user."""
    key = inst.resolved_api_key()
    return {"LLAMA_API_KEY": key} if key else None


def _entry(inst: InstanceConfig, item: dict[str, Any]) -> ModelEntry:
    meta: dict[str, Any] = item["meta"] if isinstance(item.get("meta"), dict) else {}
    status: dict[str, Any] = item["status"] if isinstance(item.get("status"), dict) else {}
    router_state = status.get("value")
    loaded = router_state in (None, "loaded")  # single-model mode answers only when loaded
    params = meta.get("n_params")
    return ModelEntry(
        provider=inst.provider,
        instance_id=inst.id,
        name=item["id"],
        size=int_or_none(meta.get("size")),
        parameter_size=format_parameter_count(params) if isinstance(params, int) else None,
        format="gguf",
        mode=inst.mode.value,
        source="local",
        status=ModelStatus.LOADED if loaded else ModelStatus.AVAILABLE,
        context_length=meta.get("n_ctx_train"),
        loaded={"base_url": inst.base_url} if loaded else None,
        meta={"router_state": router_state} if router_state else {},
    )


def _error_type(body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        value = body["error"].get("type")
        return value if isinstance(value, str) else None
    return None
