"""Instances as configured: one endpoint of a provider (the config file, the defaults or the
API), and how a managed one runs (a process or a Docker container)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class ModelMode(StrEnum):
    """What a model serves."""

    LLM = "llm"
    EMBED = "embed"
    RERANK = "rerank"


class RestartPolicy(StrEnum):
    """Docker's restart policies: Docker applies a container's; modelyard's supervisor a
    managed process's (on-failure until a crash loop; always and unless-stopped through it)."""

    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    UNLESS_STOPPED = "unless-stopped"


class ContainerConfig(BaseModel):
    """How a managed instance runs as a Docker container. Read from the config file only:
    the Docker socket is root, so the API never chooses an image, a mount, the environment
    or a device."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9][^\s]*$")
    command: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    models_mount: str = "/models"
    volumes: dict[str, str] = Field(default_factory=dict)
    network: Literal["host", "bridge"] = "host"
    container_port: int = Field(default=0, ge=0, le=65535)
    gpus: str = "auto"
    memory: str = Field(default="", pattern=r"^([0-9]+[bkmgBKMG]?)?$")
    cpus: float = Field(default=0.0, ge=0)
    restart: RestartPolicy = RestartPolicy.NO
    restart_max: int = Field(default=0, ge=0)

    @field_validator("models_mount")
    @classmethod
    def _absolute_mount(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError("models_mount is a path inside the container, starting with /")
        return value

    @property
    def repository(self) -> str:
        """The image without its tag."""
        name, _, tag = self.image.rpartition(":")
        return name if name and "/" not in tag else self.image


# An instance id: 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit.
INSTANCE_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
# The validation context of an instance read back from the store (checked when it was given).
STORED = "stored"


class InstanceConfig(BaseModel):
    """One endpoint of a provider, as configured (file, defaults or API)."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(description="a provider kind the registry knows, e.g. ollama")
    id: str = Field(pattern=f"^{INSTANCE_ID}$")
    base_url: str
    managed: bool = False
    api_key_env: str = ""
    api_key: str = Field(default="", repr=False)
    model: str = ""
    mode: ModelMode = ModelMode.LLM
    command: list[str] = Field(default_factory=list)
    ctx_size: int = Field(default=0, ge=0, le=1_048_576)
    container: ContainerConfig | None = None
    restart: RestartPolicy | None = None  # None: the top-level ``restart``
    memory_limit_bytes: int = Field(default=0, ge=0)  # a managed process's; 0: none

    @field_validator("provider")
    @classmethod
    def _check_provider(cls, value: str) -> str:
        from modelyard.providers.registry import registry  # which imports this module

        found = registry.find(value)
        if found is None:
            raise ValueError(f"unknown provider {value!r} (known: {', '.join(registry.kinds())})")
        return found.kind

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        from modelyard.validation import validate_base_url

        return validate_base_url(value)

    @model_validator(mode="after")
    def _container_is_managed(self) -> InstanceConfig:
        if self.container is not None and not self.managed:
            raise ValueError("an instance with a container is managed: set managed = true")
        return self

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: str, info: ValidationInfo) -> str:
        from modelyard.validation import validate_api_key

        if info.context == STORED:  # checked when it was given; an older one is its error
            return value
        where = f"{info.data.get('provider')}/{info.data.get('id')}'s api_key"
        return validate_api_key(value, where=where)

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.id}"

    def has_api_key(self, env: Mapping[str, str] | None = None) -> bool:
        """Whether there is a key to send (usable or not: ``resolved_api_key`` tells)."""
        env = os.environ if env is None else env
        return bool(self.api_key_env and env.get(self.api_key_env)) or bool(self.api_key)

    def resolved_api_key(self, env: Mapping[str, str] | None = None) -> str:
        """The key to send: the named environment variable wins over a stored key.

        ``InvalidInput`` ``invalid_api_key`` when it cannot go in a header: a variable set to
        anything, or a key stored before keys were checked, is this instance's error."""
        from modelyard.validation import validate_api_key

        env = os.environ if env is None else env
        if self.api_key_env and env.get(self.api_key_env):
            where = f"{self.key}'s key (environment variable {self.api_key_env})"
            return validate_api_key(env[self.api_key_env], where=where)
        return validate_api_key(self.api_key, where=f"{self.key}'s api_key")
