"""The OpenAI API (PROTOCOLS.md §5): ``GET /v1/models`` with the key. Needs a key."""

from __future__ import annotations

from typing import ClassVar

from modelyard.config import Settings
from modelyard.instance_config import InstanceConfig
from modelyard.providers.base import Capabilities
from modelyard.providers.openai_api import SpeaksOpenAI


class OpenAIProvider(SpeaksOpenAI):
    kind: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI"
    capabilities: ClassVar[Capabilities] = Capabilities(
        needs_api_key=True, embeddings=True, cloud=True
    )
    api_key_env: ClassVar[str] = "OPENAI_API_KEY"
    known_window: ClassVar[int | None] = 128_000
    max_tokens_field: ClassVar[str] = "max_completion_tokens"

    def default_instances(self, settings: Settings) -> list[InstanceConfig]:
        return [
            InstanceConfig(
                provider=self.kind,
                id="default",
                base_url=settings.openai_base_url,
                api_key_env=self.api_key_env,
                api_key=settings.openai_api_key,
            )
        ]
