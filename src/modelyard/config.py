"""Settings: an optional TOML file named by ``MODELYARD_CONFIG`` and ``MODELYARD_*`` variables.

Environment variables win over the file. The file uses the same names in lower case. When the
file lists ``[[instances]]`` they replace the default instances. Every setting is documented in
``docs/CONFIGURATION.md``; a test fails when one is missing there.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from modelyard.errors import ConfigError, InvalidInput, ModelyardError
from modelyard.instance_config import InstanceConfig, RestartPolicy

CA_CERT_NAME = "ca.pem"  # modelyard's local CA, beside the certificates it signs


class WebhookFormat(StrEnum):
    """The body a webhook receiver expects."""

    AUTO = "auto"  # from the URL: Slack's and Discord's webhook hosts, else generic
    GENERIC = "generic"  # the alert as JSON
    SLACK = "slack"  # {"text"}
    DISCORD = "discord"  # {"content"}
    NTFY = "ntfy"  # the message as text, title and priority in headers


class WebhookConfig(BaseModel):
    """One receiver of alerts."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    format: WebhookFormat = WebhookFormat.AUTO
    secret: str = Field(default="", repr=False)  # signs the body (HMAC-SHA256)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        from modelyard.validation import validate_download_url

        return validate_download_url(value)


ENV_PREFIX = "MODELYARD_"

# Settings read from the environment: name -> environment variables tried in order.
_EXTRA_ENV: dict[str, tuple[str, ...]] = {
    "openai_api_key": ("MODELYARD_OPENAI_API_KEY", "OPENAI_API_KEY"),
    "anthropic_api_key": ("MODELYARD_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
    "hf_endpoint": ("MODELYARD_HF_ENDPOINT", "HF_ENDPOINT"),
    "hf_token": ("MODELYARD_HF_TOKEN", "HF_TOKEN"),
}


class ModelSettings(BaseModel):
    """How the gateway keeps one model (``[models."name"]``); unset fields take the
    gateway-wide settings."""

    model_config = ConfigDict(extra="forbid")

    aliases: list[str] = Field(default_factory=list)
    ttl_s: float | None = Field(default=None, ge=0)  # 0: never unloaded for idleness
    min_residency_s: float | None = Field(default=None, ge=0)
    max_concurrency: int | None = Field(default=None, ge=1, le=1024)
    max_queue: int | None = Field(default=None, ge=0)
    pinned: bool = False
    num_ctx: int | None = Field(default=None, ge=256, le=1_048_576)  # Ollama: pinned context


class Settings(BaseModel):
    """Everything modelyard can be told. Defaults are for one person on one machine."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=1, le=65535)
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("modelyard")))
    models_dir: Path | None = None
    database_url: str = ""
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"

    # security (SPEC §12)
    api_key: str = Field(default="", repr=False)
    local_trust: Literal["user", "any", "none"] = "user"
    trusted_group: str = ""
    allowed_hosts: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    allow_local_origins: bool = True
    ip_allowlist: list[str] = Field(default_factory=list)
    # HTTPS and a domain (docs/PROXY.md)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    public_url: str = ""
    forwarded_allow_ips: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4 * 2**20, ge=1024)
    ws_max_connections: int = Field(default=32, ge=1)
    audit_retention_days: float = Field(default=90.0, gt=0)
    audit_max_rows: int = Field(default=100_000, ge=100)

    # provider status (SPEC §3)
    status_cache_ttl_ms: int = Field(default=5000, ge=0)
    connect_timeout_ms: int = Field(default=1000, ge=50)
    # A server that accepts and never answers is reported within seed 001's 1.5 s.
    api_timeout_ms: int = Field(default=1200, ge=50)
    monitor: bool = True
    start_timeout_s: float = Field(default=60.0, gt=0)
    stop_grace_s: float = Field(default=10.0, ge=0)
    stop_managed_on_exit: bool = False

    # logs of managed instances and downloads
    log_max_bytes: int = Field(default=20 * 2**20, ge=4096)
    log_keep: int = Field(default=3, ge=0, le=100)
    log_max_age_days: float = Field(default=14.0, gt=0)
    log_check_s: float = Field(default=2.0, gt=0)

    # history kept by modelyard
    history: bool = True
    history_sample_s: float = Field(default=10.0, ge=1)

    # alerts and their webhooks
    alerts: bool = True
    alert_down_after_s: float = Field(default=30.0, ge=0)
    alert_disk_free_bytes: int = Field(default=5 * 2**30, ge=0)
    alert_memory_percent: float = Field(default=90.0, gt=0, le=100)
    alert_check_s: float = Field(default=15.0, gt=0)
    alert_cooldown_s: float = Field(default=300.0, ge=0)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=1.0, gt=0)
    webhook_backoff_max_s: float = Field(default=60.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)

    # restart policy of managed instances
    restart: RestartPolicy = RestartPolicy.NO
    restart_backoff_s: float = Field(default=1.0, gt=0)
    restart_backoff_max_s: float = Field(default=60.0, gt=0)
    crash_loop_exits: int = Field(default=5, ge=1)
    crash_loop_window_s: float = Field(default=120.0, gt=0)
    llama_server: str = ""
    ollama_binary: str = ""

    # containers (issue 23)
    docker_host: str = ""
    gguf_runtime: Literal["process", "container"] = "process"
    llama_image: str = Field(
        default="ghcr.io/ggml-org/llama.cpp:server", pattern=r"^[A-Za-z0-9][^\s]*$"
    )

    # downloads (SPEC §5)
    download_concurrency: int = Field(default=2, ge=1, le=16)
    download_stall_s: float = Field(default=30.0, gt=0)
    download_max_attempts: int = Field(default=5, ge=1)
    download_backoff_s: float = Field(default=1.0, gt=0)
    download_max_bytes: int = Field(default=2**40, ge=1)
    disk_margin_bytes: int = Field(default=512 * 2**20, ge=0)

    # models and chat
    default_ctx_size: int = Field(default=4096, ge=256)
    memory_margin_bytes: int = Field(default=256 * 2**20, ge=0)
    chat_timeout_s: float = Field(default=600.0, gt=0)

    # the gateway (docs/GATEWAY.md)
    gateway_max_body_bytes: int = Field(default=64 * 2**20, ge=1024)
    memory_budget_bytes: int = Field(default=0, ge=0)  # 0: the machine's memory
    max_loaded: int = Field(default=0, ge=0)  # 0: no limit
    model_ttl_s: float = Field(default=300.0, ge=0)  # 0: never unloaded for idleness
    min_residency_s: float = Field(default=0.0, ge=0)
    max_concurrency: int = Field(default=4, ge=1, le=1024)
    max_queue: int = Field(default=256, ge=0)
    queue_timeout_s: float = Field(default=120.0, gt=0)
    load_timeout_s: float = Field(default=300.0, gt=0)
    gateway_read_timeout_s: float = Field(default=300.0, gt=0)
    pinned_models: list[str] = Field(default_factory=list)
    aliases: dict[str, str] = Field(default_factory=dict)
    models: dict[str, ModelSettings] = Field(default_factory=dict)

    # cloud and hub credentials
    openai_api_key: str = Field(default="", repr=False)
    openai_base_url: str = "https://api.openai.com"
    anthropic_api_key: str = Field(default="", repr=False)
    anthropic_base_url: str = "https://api.anthropic.com"
    hf_endpoint: str = "https://huggingface.co"
    hf_token: str = Field(default="", repr=False)
    open_webui_url: str = ""

    instances: list[InstanceConfig] | None = None

    @field_validator("api_key", "openai_api_key", "anthropic_api_key", "hf_token")
    @classmethod
    def _check_keys(cls, value: str, info: ValidationInfo) -> str:
        from modelyard.validation import validate_api_key

        return validate_api_key(value, where=str(info.field_name))

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("trusted_group")
    @classmethod
    def _check_group(cls, value: str) -> str:
        if value:
            try:
                grp.getgrnam(value)
            except KeyError:
                raise ValueError(f"there is no group {value!r} on this machine") from None
        return value

    @field_validator("ip_allowlist", "forwarded_allow_ips")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        from modelyard.validation import validate_public_url

        return validate_public_url(value) if value else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value:
            check_database_url(value)
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile are set together, or neither")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_certfile is not None

    @property
    def local_ca(self) -> Path | None:
        """The CA clients must trust, when the certificate is one ``modelyard certs`` made
        (its CA sits beside it); a certificate from a public CA needs none."""
        if self.tls_certfile is None:
            return None
        ca = self.tls_certfile.parent / CA_CERT_NAME
        return ca if ca.is_file() else None

    @model_validator(mode="after")
    def _unique_instances(self) -> Settings:
        seen: set[str] = set()
        for instance in self.instances or []:
            if instance.key in seen:
                raise ValueError(f"instance {instance.key} is listed twice")
            seen.add(instance.key)
        return self

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    def path_in_container(self, path: Path, mount: str) -> Path:
        """Where a file of the models directory appears in a container that mounts it at
        ``mount``; 400 ``model_outside_models_dir`` for a file elsewhere."""
        root = self.resolved_models_dir
        full = path if path.is_absolute() else root / path
        try:
            relative = full.resolve().relative_to(root.resolve())
        except ValueError:
            relative = None
        if relative is None or not mount:
            raise InvalidInput(
                f"{path} is not in the models directory ({root}), which is all a container sees",
                code="model_outside_models_dir",
                hint="Move the file into the models directory, or run it as a process.",
            )
        return Path(mount) / relative

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'modelyard.db'}"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def cli_key_path(self) -> Path:
        """The admin key ``serve`` makes at each start, for the CLI (SPEC §12)."""
        return self.data_dir / "cli.key"

    def effective_instances(self) -> list[InstanceConfig]:
        """Configured instances, or the defaults when the file lists none."""
        if self.instances is not None:
            return list(self.instances)
        return default_instances(self)


def check_database_url(url: str) -> None:
    """Refuse a database URL SQLAlchemy cannot parse, or whose driver is not installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(url).get_dialect()
    except ArgumentError:
        raise ValueError("not a database URL (e.g. sqlite:///path/modelyard.db)") from None
    except NoSuchModuleError:
        raise ValueError(f"{url.split(':', 1)[0]!r} is not a database SQLAlchemy knows") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        extra = " (pip install 'modelyard[postgres]')" if dialect.name == "postgresql" else ""
        raise ValueError(f"its driver is not installed: {exc}{extra}") from None


def default_instances(settings: Settings) -> list[InstanceConfig]:
    """The defaults of SPEC §2, each provider's own. Cloud instances exist always; without a
    key they say so."""
    from modelyard.providers.registry import registry  # which imports this module

    return [inst for provider in registry for inst in provider.default_instances(settings)]


_LIST_FIELDS = {
    "allowed_hosts",
    "cors_origins",
    "forwarded_allow_ips",
    "ip_allowlist",
    "pinned_models",
}
_FILE_ONLY = {"instances", "aliases", "models"}  # tables: only the file can say them


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        if name in _FILE_ONLY:
            continue
        for var in _EXTRA_ENV.get(name, (ENV_PREFIX + name.upper(),)):
            raw = env.get(var)
            if raw is None or (raw == "" and name in _EXTRA_ENV):
                continue
            if name in _LIST_FIELDS:
                values[name] = [item.strip() for item in raw.split(",") if item.strip()]
            elif field.annotation is bool and not raw.strip():
                continue  # empty means unset; anything else pydantic reads or refuses
            else:
                values[name] = raw
            break
    return values


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), then the environment, then ``overrides``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = env.get("MODELYARD_CONFIG", "")
    if path:
        try:
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh))
        except FileNotFoundError as exc:
            raise ConfigError(
                f"config file {path} does not exist", hint="Fix MODELYARD_CONFIG."
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        except OSError as exc:  # a directory, no permission, …
            raise ConfigError(
                f"config file {path} cannot be read: {exc.strerror}", hint="Fix MODELYARD_CONFIG."
            ) from exc
    values.update(_env_values(env))
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ModelyardError as exc:  # raised by a field validator, e.g. an instance's base_url
        raise ConfigError(f"invalid setting: {exc.detail}", hint=exc.hint) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "instances"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(
            f"invalid setting {where}: {message}",
            hint="See docs/CONFIGURATION.md for every setting and its allowed values.",
        ) from exc
