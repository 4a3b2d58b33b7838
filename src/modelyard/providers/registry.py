"""Provider kind → adapter. Adding a provider is one file and one line here."""

from __future__ import annotations

from modelyard.config import ProviderKind
from modelyard.errors import NotFound
from modelyard.providers.anthropic import AnthropicAdapter
from modelyard.providers.base import ProviderAdapter
from modelyard.providers.llamacpp import LlamaCppAdapter
from modelyard.providers.lmstudio import LMStudioAdapter
from modelyard.providers.ollama import OllamaAdapter
from modelyard.providers.openai import OpenAIAdapter
from modelyard.providers.openai_compat import OpenAICompatAdapter

ADAPTERS: dict[ProviderKind, ProviderAdapter] = {
    ProviderKind.OLLAMA: OllamaAdapter(),
    ProviderKind.LLAMACPP: LlamaCppAdapter(),
    ProviderKind.LMSTUDIO: LMStudioAdapter(),
    ProviderKind.OPENAI_COMPAT: OpenAICompatAdapter(),
    ProviderKind.OPENAI: OpenAIAdapter(),
    ProviderKind.ANTHROPIC: AnthropicAdapter(),
}


def parse_provider(value: str) -> ProviderKind:
    """The provider kind named ``value``, or 404 ``unknown_provider``."""
    try:
        return ProviderKind(value)
    except ValueError as exc:
        known = ", ".join(k.value for k in ProviderKind)
        raise NotFound(
            f"there is no provider {value!r}",
            code="unknown_provider",
            hint=f"Use one of: {known}.",
        ) from exc


def adapter_for(kind: ProviderKind) -> ProviderAdapter:
    return ADAPTERS[kind]
