"""metarl.training sits below agents and supervised (DESIGN.md): it must not import them, nor envs.

It may import ``metarl.memory``, the standard-library-only module that owns the process's malloc policy
(the MuJoCo engine, below training, uses it too)."""

from __future__ import annotations

import ast
from pathlib import Path

import metarl.training

SHARED_LEAF_MODULES = {"metarl.memory"}
ALLOWED_TOP_LEVEL = {"__future__", "metarl", "numpy", "torch", "yaml", "tqdm", "matplotlib", "tensorboard"}


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_training_imports_only_stdlib_and_its_allowed_dependencies():
    import sys

    sources = sorted(Path(metarl.training.__file__).parent.glob("*.py"))
    assert len(sources) >= 8
    for source in sources:
        for module in _imported_modules(source):
            top = module.split(".")[0]
            if module.startswith("metarl"):
                assert module.startswith("metarl.training") or module in SHARED_LEAF_MODULES, (
                    f"{source.name} imports {module}"
                )
            else:
                assert top in ALLOWED_TOP_LEVEL or top in sys.stdlib_module_names, (
                    f"{source.name} imports {module}"
                )
