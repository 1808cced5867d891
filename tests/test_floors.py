"""The house's floors: every import in ``effopd/`` points down (or stays on its floor),
no two modules import each other, and the tables and figures never load torch.

The floor table below is the one README's "Layout" section describes. Every
import statement is read with ``ast`` (module level and inside functions alike),
so a lazy import that runs back up a floor fails here too. Run it alone with
``python -m pytest tests/test_floors.py -q``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "effopd"

# Module (or package) -> floor; a module takes the floor of its longest listed prefix.
FLOORS = {
    # ground: what every floor stands on
    "effopd": 0, "effopd.errors": 0, "effopd.config": 0, "effopd.io": 0,
    "effopd.device": 0, "effopd.prompts": 0, "effopd.provenance": 0,
    "effopd.cpu_kernels": 0, "effopd.metrics": 0, "effopd.tables": 0,
    "effopd.sandbox_launch": 0, "effopd.methods": 0,
    # what the engines and the science stand on
    "effopd.data": 1, "effopd.models": 1, "effopd.grading": 1, "effopd.code_grading": 1,
    "effopd.generation": 1, "effopd.sft": 1,
    # the local engine, the engines' contract, the science of checkpoint series
    "effopd.training": 2, "effopd.analysis": 2, "effopd.evaluation": 2,
    # tables and figures from results on disk
    "effopd.reports": 3, "effopd.plots": 3,
    # the other engines (TRL, verl)
    "effopd.integrations": 4,
    # the command line
    "effopd.cli": 5,
}
# Modules the tables and figures are drawn by: none may load torch.
TORCH_FREE = ("effopd.reports", "effopd.plots", "effopd.analysis.series",
              "effopd.analysis.settings")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in FLOORS:
            return FLOORS[prefix]
    raise KeyError(module)


def imports_of(module: str) -> set[str]:
    """The ``effopd`` modules that ``module`` imports anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.add(full if full in MODULES else source)
    return {name for name in found if name.split(".")[0] == "effopd" and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_floor():
    missing = []
    for module in MODULES:
        try:
            floor_of(module)
        except KeyError:
            missing.append(module)
    assert not missing, f"give these modules a floor in FLOORS (and README's layout): {missing}"


def test_every_import_points_down():
    edges = [(module, target) for module, targets in GRAPH.items() for target in targets]
    assert len(edges) > 150  # the whole package was read
    upward = [f"{module} (floor {floor_of(module)}) imports {target} (floor {floor_of(target)})"
              for module, target in edges if floor_of(target) > floor_of(module)]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                circle = path[path.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target in GRAPH and not state.get(target):
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if not state.get(module):
            visit(module, [module])


def test_tables_and_figures_load_no_torch():
    modules = sorted(m for m in MODULES if m.startswith(TORCH_FREE))
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout[:500]


def test_star_import_of_analysis():
    namespace: dict[str, object] = {}
    exec("from effopd.analysis import *", namespace)  # noqa: S102
    import effopd.analysis

    assert set(effopd.analysis.__all__) <= set(namespace)
