"""The floor plan holds: imports run one way (docs/ARCHITECTURE.md), and no code outside
``providers/`` compares anything with a provider kind's name (the capabilities say what a
runtime can do); the few that remain are listed with their reasons."""

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


def test_only_providers_compare_with_a_kind() -> None:
    kinds = set(registry.kinds())

    def is_kind(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in kinds
        if isinstance(node, ast.Set | ast.Tuple | ast.List):
            return any(is_kind(item) for item in node.elts)
        return False

    found = set()
    for path in modules():
        where = path.relative_to(SRC).as_posix()
        if where.startswith("providers/"):
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Compare) and (
                is_kind(node.left) or any(is_kind(c) for c in node.comparators)
            ):
                found.add((where, ast.get_source_segment(source, node)))
    assert found == KIND_COMPARISONS_ALLOWED
