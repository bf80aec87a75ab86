"""The shape of the code: no import circles, the results store as the ground floor, the study apart from the
training, and small modules.

Imports are read from the source with ast (nothing is imported): module-level imports, imports inside
functions and ``study.lazy_module("...")`` calls all count; imports under ``if TYPE_CHECKING:`` do not (they
never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEFT_OUT = frozenset({"tests", "studies", "benchmarks", "results", ".venv", ".git"})
"""Top-level folders whose Python files are not modules of the code (tests, kept studies, outputs)."""
SELF_CONTAINED = frozenset({"parameters"})
"""parameters.py is one self-contained file (a copy of it must not import live code): no line limit."""
MAX_LINES = 620
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()
"""Import circles still to be removed; delete an entry once it is gone."""


def module_files() -> dict[str, Path]:
    """Module name -> file of every module of the code (packages by their ``__init__``)."""
    modules = {}
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO)
        if relative.parts[0] in LEFT_OUT or any(part.startswith(".") for part in relative.parts):
            continue
        name = ".".join(relative.with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
    return skipped


def imported_names(name: str, path: Path) -> Iterator[str]:
    """Every module name (and ``module.attribute``) that the file imports, lazily or not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_module" and node.args
              and isinstance(node.args[0], ast.Constant)):  # fmt: skip
            yield str(node.args[0].value)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the code it imports."""
    modules = module_files()
    return {name: {m for m in imported_names(name, path) if m in modules and m != name}
            for name, path in modules.items()}  # fmt: skip


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level package (or root module) -> the other top-level ones it imports."""
    packages: dict[str, set[str]] = {}
    for name, targets in graph.items():
        top = name.split(".")[0]
        packages.setdefault(top, set()).update(t.split(".")[0] for t in targets if t.split(".")[0] != top)
    return packages


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is not None:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def imports_of(graph: dict[str, set[str]], package: str) -> set[str]:
    """The modules outside ``package`` that modules of ``package`` import."""
    return {t for name, targets in graph.items() if name.split(".")[0] == package
            for t in targets if t.split(".")[0] != package}  # fmt: skip


def test_cycle_finder_finds_a_circle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_circles_between_modules():
    assert set(cycles(import_graph())) <= KNOWN_CYCLES


def test_no_import_circles_between_packages():
    assert cycles(package_graph(import_graph())) == []


def test_the_store_is_the_ground_floor():
    outside = {t.split(".")[0] for t in imports_of(import_graph(), "store")}
    assert outside <= {"parameters"}, outside


def test_the_study_reaches_the_training_only_through_job_command_lines():
    packages = package_graph(import_graph())
    assert "training" not in packages["study"] and "analysis" not in packages["study"]
    assert "study" not in packages["training"]


def test_modules_are_small():
    long = {name: n for name, path in module_files().items()
            if name.split(".")[0] in ("store", "study", "training", "analysis") and name not in SELF_CONTAINED
            and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}  # fmt: skip
    assert long == {}
