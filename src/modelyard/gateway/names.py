"""The names clients use for models: plain catalog names, ``provider/instance/name``, aliases.

Every catalog model answers to ``provider/instance/name``, always, and to its plain catalog
name when no other model has that name. Aliases come from the config file (``[aliases]``
and ``[models."name"] aliases``) and point at either form. An Ollama name without a tag
means ``:latest``, as in Ollama (the provider's ``catalog_name`` says so).

When one name could be read two ways, the order is: an alias, then ``provider/instance/name``
when those three parts name a catalog model, then the plain name. So a local file saved as
``ollama/default/x`` in the models directory is reached under ``llamacpp/local/ollama/...``
when an Ollama model ``x`` of instance ``default`` exists.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modelyard.errors import Conflict, NotFound
from modelyard.models.types import ModelKey
from modelyard.providers.registry import registry


def key_of(qualified_name: str) -> ModelKey:
    """``provider/instance/name`` back into a catalog key (names may hold slashes)."""
    provider, _, rest = qualified_name.partition("/")
    instance_id, _, name = rest.partition("/")
    return ModelKey(provider, instance_id, name)


def qualified(key: ModelKey) -> str:
    """The name that always reaches ``key``'s model."""
    return f"{key.provider}/{key.instance_id}/{key.name}"


@dataclass(frozen=True)
class NameIndex:
    """The names of the catalog's models at one version of the catalog."""

    keys: frozenset[ModelKey]
    plain: Mapping[str, tuple[ModelKey, ...]]  # catalog name → every model of that name
    aliases: Mapping[str, str]  # alias → the name it stands for

    @classmethod
    def build(cls, keys: Iterable[ModelKey], aliases: Mapping[str, str]) -> NameIndex:
        plain: defaultdict[str, list[ModelKey]] = defaultdict(list)
        known = frozenset(keys)
        for key in sorted(known):
            plain[key.name].append(key)
        return cls(known, {name: tuple(found) for name, found in plain.items()}, aliases)

    def resolve(self, name: str) -> ModelKey:
        """The model ``name`` means; 404 ``model_not_found``, 409 ``model_ambiguous``."""
        target = self.aliases.get(name, name)
        key = self._qualified(target)
        if key is not None:
            return key
        found = self._plain(target)
        if len(found) == 1:
            return found[0]
        if found:
            choices = ", ".join(qualified(k) for k in found)
            raise Conflict(
                f"{len(found)} models are called {target!r}",
                code="model_ambiguous",
                hint=f"Use one of: {choices} (or define an alias).",
            )
        raise NotFound(
            f"there is no model {name!r}",
            code="model_not_found",
            hint="GET /v1/models lists the names you can use.",
        )

    def _qualified(self, name: str) -> ModelKey | None:
        provider_kind, _, rest = name.partition("/")
        instance_id, _, model = rest.partition("/")
        provider = registry.find(provider_kind)
        if provider is None or not model:
            return None
        key = ModelKey(provider.kind, instance_id, provider.catalog_name(model))
        return key if key in self.keys else None

    def _plain(self, name: str) -> list[ModelKey]:
        found: dict[ModelKey, None] = {}
        for candidate in {name, *(p.catalog_name(name) for p in registry)}:
            for key in self.plain.get(candidate, ()):
                # ``x`` means ``x:latest`` only for the runtimes that say so
                if candidate == name or registry.get(key.provider).catalog_name(name) == candidate:
                    found[key] = None
        return list(found)

    def names_of(self, key: ModelKey) -> list[str]:
        """Every name ``key``'s model answers to: plain (when unambiguous), qualified, aliases."""
        names = [key.name] if len(self.plain.get(key.name, ())) == 1 else []
        names.append(qualified(key))
        for alias, target in self.aliases.items():
            try:
                if self.resolve(target) == key:
                    names.append(alias)
            except (NotFound, Conflict):
                continue
        return names
