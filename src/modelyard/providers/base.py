"""The provider contract: what one kind of runtime offers modelyard, and what it can do.

A provider knows the wire of one runtime and nothing of the store, the API or the UI. The
rest of modelyard asks the registry (``modelyard.providers.registry``) for a kind's provider
and reads its ``capabilities`` instead of branching on the kind. Methods a runtime lacks keep
the defaults below, which answer "not supported" (409 ``not_supported``) or nothing. The
clients a running modelyard shares (HTTP, SDKs) are passed in: providers are stateless and
registered once per process.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import httpx

from modelyard.chat.types import ChatOptions, Piece, Target, Turn
from modelyard.config import Settings
from modelyard.errors import ChatError, Conflict, NotFound, Unavailable
from modelyard.instance_config import InstanceConfig, ModelMode
from modelyard.models.types import ModelEntry, RefetchRequest
from modelyard.runtimes.processes import LaunchSpec

if TYPE_CHECKING:
    from modelyard.providers.clients import Clients
    from modelyard.providers.pull import LayerTracker


class ProviderState(StrEnum):
    UNKNOWN = "UNKNOWN"
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"
    ERROR = "ERROR"

    @classmethod
    def parse(cls, value: str) -> ProviderState:
        """Accept the legacy names READY and DISCONNECTED as aliases."""
        upper = value.strip().upper()
        return cls({"READY": "RUNNING", "DISCONNECTED": "STOPPED"}.get(upper, upper))


@dataclass(frozen=True)
class Capabilities:
    """What a kind of runtime can do; the API shows them (``GET /api/providers/kinds``)."""

    needs_api_key: bool = False  # no status, listing or chat without a key
    manageable: bool = False  # modelyard can run it itself (``launch_spec``)
    loads_models: bool = False  # load and unload through its API
    deletes_models: bool = False  # delete through its API
    pulls: bool = False  # fetches models itself; a download source named after its kind
    embeddings: bool = False  # ``embed``
    exact_tokens: bool = False  # ``token_counter`` counts with the model's own tokenizer
    owns_memory: bool = False  # decides itself what stays loaded (Ollama, LM Studio)
    cloud: bool = False  # a hosted API: not this machine's memory, tokens cost money
    runs_gguf: bool = False  # runs the models directory's GGUF files, one server per file

    def wire(self) -> dict[str, bool]:
        return asdict(self)


@dataclass(frozen=True)
class ApiPaths:
    """Where the APIs a runtime speaks live under its base URL (None: it does not speak it)."""

    openai: str | None = "/v1"  # chat/completions, embeddings, models
    anthropic: str | None = None  # messages
    ollama: str | None = None  # Ollama's native /api/...


@dataclass(frozen=True)
class ApiProbe:
    """The API layer's verdict."""

    responded: bool  # some HTTP answer came back
    ok: bool = False  # recognised as this provider and healthy
    state: ProviderState | None = None  # when the answer itself decides (STARTING, ERROR)
    reason_code: str | None = None
    hint: str | None = None
    version: str | None = None
    models_loaded: int | None = None


@dataclass(frozen=True)
class RuntimeCheck:
    """One line of ``modelyard doctor`` about a runtime modelyard can run."""

    ok: bool
    what: str
    fix: str = ""
    required: bool = True  # False: only a note, never a problem


class TokenCounter(Protocol):
    """Counts the tokens of texts for one model."""

    async def count(self, texts: Sequence[str]) -> list[int]: ...


BYTES_PER_TOKEN_ESTIMATE = 3  # conservative: English text averages about 4


class EstimatingCounter:
    """An estimate from the UTF-8 length, for runtimes without a tokenizer endpoint."""

    async def count(self, texts: Sequence[str]) -> list[int]:
        return [math.ceil(len(t.encode()) / BYTES_PER_TOKEN_ESTIMATE) for t in texts]


# -- helpers of the providers ---------------------------------------------------------------


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def describe_http(resp: httpx.Response) -> str:
    """A short description of an unexpected answer, for hints."""
    ctype = resp.headers.get("content-type", "").split(";")[0] or "no content type"
    return f"HTTP {resp.status_code} ({ctype})"


def json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def wrong_service(inst: InstanceConfig, resp: httpx.Response, expected: str) -> ApiProbe:
    server = resp.headers.get("server") or resp.headers.get("x-powered-by") or ""
    seen = f"{describe_http(resp)}{', server ' + server if server else ''}"
    return ApiProbe(
        responded=True,
        state=ProviderState.ERROR,
        reason_code="wrong_service",
        hint=(
            f"Something else answers on {inst.base_url} ({seen}), not {expected}. "
            "Fix the base URL or free the port."
        ),
    )


def unauthorized(inst: InstanceConfig, has_key: bool) -> ApiProbe:
    hint = (
        "The API key was rejected; check the key configured for this instance."
        if has_key
        else "This server requires an API key; configure one for this instance."
    )
    return ApiProbe(
        responded=True, state=ProviderState.ERROR, reason_code="unauthorized", hint=hint
    )


def model_not_found(name: str, inst: InstanceConfig) -> NotFound:
    return NotFound(
        f"{inst.key} has no model {name!r}",
        code="model_not_found",
        hint="List the models to see the names it has; sync first if it was just added.",
    )


def unreachable(inst: InstanceConfig, exc: Exception) -> Unavailable:
    return Unavailable(
        f"{inst.key} cannot be reached: {exc}",
        code="provider_unreachable",
        hint="Start the provider, then try again.",
    )


def not_supported(inst: InstanceConfig, action: str) -> Conflict:
    """Cloud and OpenAI-compatible servers decide themselves what is loaded."""
    return Conflict(
        f"{inst.provider} models cannot be {action} by modelyard",
        code="not_supported",
        hint="The server loads its models itself; there is nothing to start or stop.",
    )


# -- the contract ---------------------------------------------------------------------------


class Provider(ABC):
    """One kind of runtime. Subclasses set the class attributes and implement ``probe`` and
    ``list_models``; the rest have defaults for runtimes that lack them. Registered once with
    ``registry.register(MyProvider())``."""

    kind: ClassVar[str]  # the name in URLs, config and the store: lower case, [a-z0-9_]
    label: ClassVar[str]  # how people call it
    aliases: ClassVar[tuple[str, ...]] = ()  # other spellings accepted on input, never answered
    capabilities: ClassVar[Capabilities] = Capabilities()
    api_paths: ClassVar[ApiPaths] = ApiPaths()
    api_key_env: ClassVar[str] = ""  # the environment variable its key is usually in
    start_hint: ClassVar[str] = "Start the server"  # what to do when nothing listens
    # Context windows: a hosted API's documented window; whether the runtime reports the
    # context of a loaded model; whether that context is fixed once loaded (a request
    # cannot grow it, as Ollama's num_ctx can).
    known_window: ClassVar[int | None] = None
    reports_context: ClassVar[bool] = False
    fixed_context: ClassVar[bool] = False
    loads_on_demand: ClassVar[bool] = False  # loads a model on its first request

    def default_instances(self, settings: Settings) -> list[InstanceConfig]:
        """The instances that exist when the config file lists none (SPEC §2)."""
        return []

    # -- status ---------------------------------------------------------------------------

    @abstractmethod
    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        """The API layer of a status check: one cheap request that never loads a model and
        never spends tokens, whose answer must be recognised as this runtime. Raise httpx
        errors; the caller maps them."""

    # -- models ---------------------------------------------------------------------------

    def check_name(self, name: str) -> str:
        """``name`` if the runtime accepts it as a model name (400 ``invalid_model_name``)."""
        return name

    def catalog_name(self, name: str) -> str:
        """The name under which the runtime lists ``name`` (Ollama adds ``:latest``)."""
        return name

    @abstractmethod
    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        """The models the instance serves right now; ``ListingError`` when it cannot say."""

    async def load(
        self, http: httpx.AsyncClient, inst: InstanceConfig, name: str, ctx_size: int | None
    ) -> None:
        """Load a model into memory (``loads_models``); ``http`` waits as long as a start."""
        raise not_supported(inst, "started")

    async def unload(self, http: httpx.AsyncClient, inst: InstanceConfig, name: str) -> None:
        """Unload a model (``loads_models``); not an error when it was not loaded."""
        raise not_supported(inst, "stopped")

    async def delete(self, http: httpx.AsyncClient, inst: InstanceConfig, name: str) -> None:
        """Delete a model (``deletes_models``); 404 ``model_not_found`` when it is not there."""
        raise not_supported(inst, "deleted")

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
        """Fetch a model into the runtime (``pulls``), feeding ``progress``; ``PullError``."""
        raise not_supported(inst, "pulled")

    def pull_request(self, name: str, instance_id: str) -> RefetchRequest | None:
        """The ``POST /api/downloads`` body that fetches ``name`` again, for a runtime that
        pulls (its kind is the download source)."""
        if not self.capabilities.pulls:
            return None
        return RefetchRequest(source=self.kind, model_name=name, instance_id=instance_id)

    # -- chat -----------------------------------------------------------------------------

    def chat(
        self, clients: Clients, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        """The token stream of one answer. Leaving the iterator early closes the upstream
        response, which is how the runtime learns to stop. Failures raise ``ChatError``."""
        raise ChatError(f"cannot chat with {self.kind}", code="unsupported_provider")

    async def embed(
        self, clients: Clients, target: Target, texts: Sequence[str]
    ) -> list[list[float]]:
        """One vector per text (``embeddings``); failures raise ``ChatError``."""
        raise ChatError(f"{self.label} has no embeddings", code="not_supported")

    async def will_load(self, http: httpx.AsyncClient, target: Target) -> bool:
        """Whether answering will first load the model (``loads_on_demand``)."""
        return False

    async def loaded_context(self, http: httpx.AsyncClient, target: Target) -> int | None:
        """The context the runtime gave the loaded model (``reports_context``)."""
        return None

    async def model_context(self, http: httpx.AsyncClient, target: Target) -> int | None:
        """The context the model was made for, from its metadata."""
        return None

    def token_counter(
        self, http: httpx.AsyncClient, target: Target, memo: OrderedDict[str, int]
    ) -> TokenCounter:
        """The most exact counter available (``exact_tokens``); ``memo`` caches counts."""
        return EstimatingCounter()

    # -- running it -----------------------------------------------------------------------

    def launch_spec(self, settings: Settings, inst: InstanceConfig) -> LaunchSpec:
        """How modelyard runs this instance's server (``manageable``)."""
        raise Conflict(
            f"{self.label} instances cannot be managed by modelyard",
            code="not_manageable",
            hint="Start and stop this server yourself.",
        )

    def container_command(
        self, settings: Settings, inst: InstanceConfig, *, host: str, port: int, models_mount: str
    ) -> LaunchSpec:
        """What a container of this runtime's image runs to serve ``inst`` on ``host:port``:
        the arguments after the image's entrypoint, and the environment."""
        raise Conflict(
            f"modelyard does not know how to run {self.label} in a container",
            code="container_not_supported",
            hint="Give the instance's container a command in the config file.",
        )

    def binary_missing(self, settings: Settings, inst: InstanceConfig) -> str | None:
        """A hint when the program a managed instance needs cannot be found, else None."""
        return None

    def runtime_check(self, settings: Settings, needed_by: list[str]) -> RuntimeCheck | None:
        """What ``modelyard doctor`` says about this runtime; ``needed_by``: the managed
        instances of this kind in the configuration."""
        return None

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
        """The command line serving one GGUF file (``runs_gguf``); ``in_container``: for the
        runtime's container image, whose own server program it names."""
        raise NotImplementedError(f"{self.kind} does not run GGUF files")

    async def serving(self, http: httpx.AsyncClient, base_url: str) -> bool:
        """Whether a server this runtime runs for a file has its model loaded (``runs_gguf``)."""
        return False

    def says_ready(self, line: str) -> bool:
        """Whether a line a server of a file prints says it has just become ready
        (``runs_gguf``): a reason to ask ``serving`` at once, never an answer in its place."""
        return False
