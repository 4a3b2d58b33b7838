"""Provider kind → provider. A provider is one module and one ``register`` line below; the
kinds config and API validation accept are the kinds registered here."""

from __future__ import annotations

import re
from collections.abc import Iterator

from modelyard.errors import NotFound
from modelyard.providers.anthropic import AnthropicProvider
from modelyard.providers.base import Provider
from modelyard.providers.llamacpp import LlamaCppProvider
from modelyard.providers.lmstudio import LMStudioProvider
from modelyard.providers.ollama.provider import OllamaProvider
from modelyard.providers.openai import OpenAIProvider
from modelyard.providers.openai_compat import OpenAICompatProvider

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ProviderRegistry:
    """The providers of this process, in the order they were registered."""

    def __init__(self) -> None:
        self._providers: dict[str, Provider] = {}
        self._aliases: dict[str, str] = {}  # another spelling accepted on input → the kind

    def register(self, provider: Provider) -> None:
        if not _KIND.match(provider.kind):
            raise ValueError(f"{provider.kind!r} is not a provider kind: use [a-z][a-z0-9_]*")
        if provider.kind in self._providers:
            raise ValueError(f"a provider of kind {provider.kind!r} is registered already")
        if provider.capabilities.runs_gguf and any(
            p.capabilities.runs_gguf for p in self._providers.values()
        ):
            raise ValueError("one provider runs the models directory's GGUF files")
        self._providers[provider.kind] = provider
        for alias in provider.aliases:
            self._aliases[alias] = provider.kind

    def unregister(self, kind: str) -> None:
        self._providers.pop(kind, None)
        self._aliases = {a: k for a, k in self._aliases.items() if k != kind}

    def __iter__(self) -> Iterator[Provider]:
        return iter(list(self._providers.values()))

    def kinds(self) -> list[str]:
        return list(self._providers)

    def find(self, kind: str) -> Provider | None:
        """The provider of kind ``kind`` (or of an alias of it: ``llama_cpp``), or None."""
        return self._providers.get(self._aliases.get(kind, kind))

    def get(self, kind: str) -> Provider:
        """The provider of kind ``kind`` (or an alias), or 404 ``unknown_provider``. Answers
        name ``.kind``, never the alias."""
        found = self.find(kind)
        if found is None:
            raise NotFound(
                f"there is no provider {kind!r}",
                code="unknown_provider",
                hint=f"Use one of: {', '.join(self._providers)}.",
            )
        return found

    def puller(self, source: str) -> Provider | None:
        """The provider that pulls a download of source ``source`` (its own kind, ``pulls``),
        or None: the source is fetched by modelyard itself (a URL, the Hub)."""
        found = self._providers.get(source)
        return found if found is not None and found.capabilities.pulls else None

    def gguf_runner(self) -> Provider:
        """The provider that runs the models directory's GGUF files."""
        return next(p for p in self._providers.values() if p.capabilities.runs_gguf)


registry = ProviderRegistry()
registry.register(OllamaProvider())
registry.register(LlamaCppProvider())
registry.register(LMStudioProvider())
registry.register(OpenAICompatProvider())
registry.register(OpenAIProvider())
registry.register(AnthropicProvider())
