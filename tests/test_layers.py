"""The package's layers (DESIGN.md): no import cycles, function-local imports included, and dependencies that
point down (core imports only torch, envs no torch, agents and supervised neither each other nor the CLI,
training none of them)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "metarl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module ``path`` imports anywhere in its body (top level, functions, ``TYPE_CHECKING`` blocks)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {m for m in _imports(path, modules) if m in modules} - {name} for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _external(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imports(path, _modules())}


def test_the_package_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_core_imports_only_torch():
    for name, path in _modules().items():
        if name.startswith("metarl.core"):
            assert _external(path) <= {"__future__", "collections", "typing", "torch", "metarl"}, name
            assert all(m.startswith("metarl.core") for m in _graph()[name]), name


def test_envs_import_no_torch():
    for name, path in _modules().items():
        if name.startswith("metarl.envs"):
            assert "torch" not in _external(path), name


def test_agents_and_supervised_import_neither_each_other_nor_the_cli():
    graph = _graph()
    for name, targets in graph.items():
        for half, other in (("metarl.agents", "metarl.supervised"), ("metarl.supervised", "metarl.agents")):
            if name.startswith(half):
                assert not any(t.startswith(other) for t in targets), (name, targets)
                assert "metarl.cli" not in targets, name


def test_training_sits_below_agents_supervised_and_envs():
    import sys

    allowed = {"__future__", "metarl", "numpy", "torch", "yaml", "tqdm", "matplotlib", "tensorboard"}
    graph = _graph()
    for name, path in _modules().items():
        if name.startswith("metarl.training"):
            # metarl.errors and metarl.memory (the malloc policy) import only the standard library
            below = ("metarl.training", "metarl.errors", "metarl.memory")
            assert all(t.startswith(below) for t in graph[name]), name
            assert all(top in allowed or top in sys.stdlib_module_names for top in _external(path)), name
