"""The floor plan holds: imports run one way (docs/ARCHITECTURE.md), no code outside
``providers/`` compares anything with a provider kind's name or names an enum member that is
one (the capabilities say what a runtime can do), and ``dict[str, Any]`` stays at the wire;
the few exceptions are listed with their reasons."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modelyard.providers.registry import registry

SRC = Path(__file__).resolve().parent.parent / "src" / "modelyard"

# package (or module) → what it must never import
FORBIDDEN = {
    "providers": ("modelyard.store", "modelyard.api", "modelyard.services", "modelyard.cli"),
    "store": ("modelyard.services", "modelyard.api", "modelyard.models", "modelyard.runtimes"),
    "events": ("modelyard.services", "modelyard.models", "modelyard.runtimes", "modelyard.chat"),
    "models": ("modelyard.api", "modelyard.services", "modelyard.cli"),
    "runtimes": ("modelyard.api", "modelyard.services", "modelyard.cli", "modelyard.models"),
    "chat": ("modelyard.api", "modelyard.services", "modelyard.cli"),
    "gguf": ("modelyard.api", "modelyard.services", "modelyard.cli"),
    "downloads": ("modelyard.api", "modelyard.services", "modelyard.cli"),
}
# Comparisons with a kind's name that stay, and why (docs/ARCHITECTURE.md says the same):
# the CLI speaks the downloads API, whose source ``ollama`` names the registry it pulls from.
KIND_COMPARISONS_ALLOWED = {
    ("cli/downloads.py", 'body["source"] != "ollama"'),
    ("cli/downloads.py", 'task["source"] == "ollama"'),
}

# Enums whose members' values are spelled like kinds without being one, and why.
ENUMS_NOT_KINDS = {
    "Dialect": "a wire format the gateway speaks, named after the API it imitates; any "
    "runtime may sit behind it",
}

# Where a JSON object of any shape (``dict[str, Any]``, ``Mapping[str, Any]`` or an alias of
# one) may appear: a module, or a package ending in "/", and why. The middle passes typed
# objects; a typed object's JSON form is made by its ``wire()`` method, called at the wire
# (a route, the WebSocket, a store row), and is not counted. docs/ARCHITECTURE.md says the same.
ANY_DICTS_ALLOWED = {
    # The wire itself.
    "api/": "HTTP request and response bodies",
    "providers/": "each runtime's HTTP bodies and SDK objects",
    "cli/": "the HTTP API's JSON, as the CLI reads and prints it",
    "store/tables.py": "the JSON columns",
    "gateway/translate/": "one wire dialect into another: bodies relayed untouched except for "
    "the fields translated (a count_tokens body kept as it came, for a backend that counts)",
    "gateway/wire.py": "the gateway's dialects on the wire (bodies, error shapes)",
    "gateway/exchange.py": "a client's request body, relayed to the backend as it came",
    "gateway/relay.py": "a request body sent on to a backend",
    "gateway/assemble.py": "an OpenAI stream's chunks assembled into the response body",
    "gateway/keyed.py": "a client's request body, read for its token figures (the prompt, "
    "max_tokens) as it came",
    "errors.py": "the problem+json body (an error's wire form, with its extension members)",
    "config.py": "the TOML file and the environment, before pydantic validates them",
    "events.py": "an event's wire form (Event.data, the envelope, the snapshot: made once, "
    "sent as-is to every WebSocket)",
    "runtimes/process_records.py": "a PID file's JSON",
    "runtimes/containers.py": "Docker's API through its SDK: inspect attributes, stats, "
    "create options",
    "downloads/worker.py": "the JSON lines a download worker process writes on its pipe",
    "downloads/execution.py": "the same pipe's JSON lines, read by the server",
    "downloads/manager.py": "a download request recorded in a JSON column (model_sources), "
    "validated here as the API's body is",
    "downloads/repository.py": "the downloads of the WebSocket snapshot, in their wire form",
    "services.py": "the instances and the loaded models of the WebSocket snapshot, in their "
    "wire form",
    "runtimes/health.py": "a status's wire form, made once when it is recorded and served as "
    "it is by the route and the snapshot (the cached path stays cheap)",
}
ANY_DICT_SPELLINGS = {
    "dict[str, Any]",
    "Dict[str, Any]",
    "Mapping[str, Any]",
    "MutableMapping[str, Any]",
}


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:``: names for annotations that never run
    (the event catalogue names the payload types of the services that publish them)."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }


def imports(path: Path) -> set[str]:
    """What a module imports when it runs."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    skipped = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    targets = [SRC / f"{package}.py"] if (SRC / f"{package}.py").exists() else []
    targets += list((SRC / package).rglob("*.py")) if (SRC / package).is_dir() else []
    assert targets
    wrong = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in targets
        for name in imports(path)
        if name.startswith(FORBIDDEN[package])
    ]
    assert wrong == []


def _kind_members(trees: dict[Path, ast.Module], kinds: set[str]) -> set[str]:
    """``Enum.MEMBER`` of every enum member whose value is a kind's name (a download source
    named after the runtime that pulls it): naming one is naming the kind."""
    found = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or node.name in ENUMS_NOT_KINDS:
                continue
            for item in node.body:
                if (
                    isinstance(item, ast.Assign)
                    and isinstance(item.value, ast.Constant)
                    and item.value.value in kinds
                ):
                    names = (t.id for t in item.targets if isinstance(t, ast.Name))
                    found.update(f"{node.name}.{name}" for name in names)
    return found


def test_only_providers_compare_with_a_kind() -> None:
    kinds = set(registry.kinds())
    trees = {path: ast.parse(path.read_text()) for path in modules()}
    members = _kind_members(trees, kinds)

    def is_kind(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in kinds
        if isinstance(node, ast.Set | ast.Tuple | ast.List):
            return any(is_kind(item) for item in node.elts)
        return False

    found = set()
    for path, tree in trees.items():
        where = path.relative_to(SRC).as_posix()
        if where.startswith("providers/"):
            continue
        source = path.read_text()
        for node in ast.walk(tree):
            compares = isinstance(node, ast.Compare) and (
                is_kind(node.left) or any(is_kind(c) for c in node.comparators)
            )
            # Any use of such a member, compared or not (``SourceKind.OLLAMA.value`` too).
            names_member = isinstance(node, ast.Attribute) and ast.unparse(node) in members
            if compares or names_member:
                found.add((where, ast.get_source_segment(source, node)))
    assert found == KIND_COMPARISONS_ALLOWED


def _module_name(path: Path) -> str:
    return ".".join(("modelyard", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(
        ".__init__"
    )


def _is_any_dict(node: ast.AST) -> bool:
    return isinstance(node, ast.Subscript) and ast.unparse(node) in ANY_DICT_SPELLINGS


def _any_dict_aliases(trees: dict[Path, ast.Module]) -> set[tuple[str, str]]:
    """(module, name) of every alias of an any-dict (``Event = dict[str, Any]``)."""
    found = set()
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _is_any_dict(node.value):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                alias = ast.unparse(node.annotation).endswith("TypeAlias")
                names = [node.target.id] if alias and isinstance(node.target, ast.Name) else []
                names = names if _is_any_dict(node.value) else []
            else:
                continue
            found.update((_module_name(path), name) for name in names)
    return found


def _uses_any_dict(tree: ast.Module, aliases: set[tuple[str, str]]) -> bool:
    """An any-dict or an imported alias of one, outside a ``wire()`` method."""
    wire_forms = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "wire"
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in wire_forms:
            continue
        if _is_any_dict(node):
            return True
        if isinstance(node, ast.ImportFrom) and any(
            (node.module, alias.name) in aliases for alias in node.names
        ):
            return True
    return False


def test_any_dicts_only_at_the_wire() -> None:
    trees = {path: ast.parse(path.read_text()) for path in modules()}
    aliases = _any_dict_aliases(trees)
    using = {
        path.relative_to(SRC).as_posix()
        for path, tree in trees.items()
        if _uses_any_dict(tree, aliases)
    }

    def allowed(where: str) -> str | None:
        return next((entry for entry in ANY_DICTS_ALLOWED if where.startswith(entry)), None)

    assert sorted(where for where in using if allowed(where) is None) == []
    # An entry whose module no longer carries one goes from the list (and the docs).
    assert sorted(set(ANY_DICTS_ALLOWED) - {allowed(where) for where in using}) == []
