"""The package's floors (``docs/architecture.md``): no module imports a floor above its own, and no import runs in
a circle.

Every module of ``restorekit/`` and of ``kernels/`` (installed as ``restorekit_kernels``) is parsed, not
imported, so function-level imports count as much as module-level ones (a lazy import hides a circle until the
call that closes it). Besides ``import`` statements, a module imports:

* the name ``X`` of a package with lazy exports (``restorekit``, ``restorekit.batch``: their ``lazy_exports``
  table), from the module that defines it: the one loaded on first use, on behalf of whoever asks. The package
  itself imports none of them, and its ``if TYPE_CHECKING:`` imports of those names are only their types;
* a ``"package.module:attribute"`` string, the form the command table of ``cli/app.py`` loads on demand.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where each importable name lives: restorekit/ as itself, kernels/ under its installed name (pyproject.toml).
SOURCES = {"restorekit": ROOT / "restorekit", "restorekit_kernels": ROOT / "kernels"}

# Bottom to top; a unit is a top-level module or package (``restorekit`` alone is the package's __init__).
# A module imports its own unit and the units of lower floors. Units that share a floor are peers, which do not
# import each other: ``batch`` and ``train`` both stand on ``inference`` and neither needs the other.
FLOORS: tuple[tuple[str, ...], ...] = (
    # errors, the one place that builds messages, the cache folder, lazy exports; the package's __init__ is
    # only __version__ and the table of its lazy public names.
    ("base",),
    ("restorekit_kernels",),  # Triton kernels: torch and triton only; only ops imports them (a test below)
    ("ops",),  # validate → pick backend → reference, compiled CPU kernel or Triton kernel
    ("layers",),
    ("models",),  # the architecture table, weights files, the registry, one file per family
    ("inference",),  # io, tiling, runtime, precision, the spec and restore()
    ("batch", "train"),  # files, folders and globs on local or Ray engines; training
    # Measures on the training degradations (train.degradations, camera_noise, shading) and batches (batch).
    ("bench",),
    ("cli",),  # the `restorekit` command, and `python -m restorekit`
)
BASE = {"restorekit", "restorekit.errors", "restorekit._checks", "restorekit._cache", "restorekit._lazy"}
KERNEL_CALLERS = ("ops",)  # the only unit that imports restorekit_kernels
COMMAND_STRING = re.compile(r"(restorekit(?:_kernels)?(?:\.\w+)*):\w+")


def unit(module: str) -> str:
    """The unit of ``module``: ``restorekit.inference.io.decode`` → ``inference``."""
    if module in BASE:
        return "base"
    if module == "restorekit.__main__":
        return "cli"
    parts = module.split(".")
    return parts[1] if parts[0] == "restorekit" else parts[0]


def floor(module: str) -> int:
    """The floor of ``module``, counted from the bottom."""
    name = unit(module)
    found = [i for i, units in enumerate(FLOORS) if name in units]
    assert found, f"{module}: its unit {name!r} is on no floor; add it to FLOORS in {Path(__file__).name}"
    return found[0]


@dataclass(frozen=True)
class Import:
    """``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line} → {self.target}"


def modules() -> dict[str, Path]:
    """Every module's dotted name → its file."""
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def lazy_exports(tree: ast.Module) -> dict[str, str]:
    """The table ``name → module`` a package gives to ``lazy_exports(__name__, table)``, or ``{}``."""
    tables = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            table = node.args[1]
            table = tables.get(table.id, table) if isinstance(table, ast.Name) else table
            return {ast.literal_eval(k): ast.literal_eval(v) for k, v in zip(table.keys, table.values, strict=True)}
    return {}


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements under ``if TYPE_CHECKING:``."""
    return {
        child
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for statement in node.body
        for child in ast.walk(statement)
        if isinstance(child, ast.Import | ast.ImportFrom)
    }


MODULES = modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}
EXPORTS = {name: table for name in PACKAGES if (table := lazy_exports(TREES[name]))}


def imports_of(source: str, tree: ast.Module) -> list[Import]:
    """What module ``source`` (parsed as ``tree``) imports of the others, written or loaded on first use."""
    here = source if source in PACKAGES else source.rpartition(".")[0]
    skipped = type_checking_only(tree) if source in EXPORTS else set()
    nodes = [node for node in ast.walk(tree) if node not in skipped]
    bound = {  # local name → the module an ``import`` statement binds it to
        alias.asname or alias.name.partition(".")[0]: alias.name if alias.asname else alias.name.partition(".")[0]
        for node in nodes
        if isinstance(node, ast.Import)
        for alias in node.names
    }

    def resolve(package: str, name: str) -> str:
        """What ``from package import name`` loads: a submodule, the module behind a lazy name, or the package."""
        if f"{package}.{name}" in MODULES:
            return f"{package}.{name}"
        return EXPORTS.get(package, {}).get(name, package)

    imports = []
    for node in nodes:
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = node.module or ""
            if node.level:
                parts = here.split(".")
                package = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [node.module])])
            targets = [resolve(package, alias.name) for alias in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            targets = [EXPORTS.get(bound[node.value.id], {}).get(node.attr)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = COMMAND_STRING.fullmatch(node.value)
            targets = [match[1] if match else None]
        imports += [Import(source, t, node.lineno) for t in targets if t in MODULES and t != source]
    return imports


def floor_violations(graph: list[Import]) -> list[str]:
    """The imports of ``graph`` that reach above their module's floor, or across to a peer on it."""
    wrong = []
    for edge in graph:
        source, target = floor(edge.source), floor(edge.target)
        if target > source or (target == source and unit(edge.source) != unit(edge.target)):
            wrong.append(f"{edge} (floor {source} {unit(edge.source)} imports floor {target} {unit(edge.target)})")
    return wrong


GRAPH = [edge for name, tree in TREES.items() for edge in imports_of(name, tree)]


def test_every_module_is_on_a_floor():
    for name in MODULES:
        floor(name)


def test_no_module_imports_a_floor_above_its_own():
    wrong = floor_violations(GRAPH)
    assert not wrong, "imports against the floors:\n" + "\n".join(wrong)


def test_only_ops_imports_the_kernels():
    wrong = [
        str(e)
        for e in GRAPH
        if unit(e.target) == "restorekit_kernels" and unit(e.source) not in (*KERNEL_CALLERS, "restorekit_kernels")
    ]
    assert not wrong, "the kernels are reached through ops (its Backends):\n" + "\n".join(wrong)


def find_cycle(edges: list[Import]) -> list[Import]:
    """One circle of imports among ``edges`` (each leads to the next, the last back to the first), or ``[]``."""
    out: dict[str, list[Import]] = {}
    for edge in edges:
        out.setdefault(edge.source, []).append(edge)
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every path from it is explored
    path: list[Import] = []

    def visit(module: str) -> list[Import]:
        state[module] = "open"
        for edge in out.get(module, []):
            path.append(edge)
            if state.get(edge.target) == "open":
                return path[next(i for i, e in enumerate(path) if e.source == edge.target) :]
            if edge.target not in state and (cycle := visit(edge.target)):
                return cycle
            path.pop()
        state[module] = "done"
        return []

    for module in sorted(out):
        if module not in state and (cycle := visit(module)):
            return cycle
    return []


def test_no_import_runs_in_a_circle():
    cycle = find_cycle(GRAPH)
    assert not cycle, "a circle of imports:\n" + "\n".join(map(str, cycle))


def with_line(module: str, code: str) -> list[Import]:
    """The import graph with ``code`` appended to ``module``."""
    tree = ast.parse(MODULES[module].read_text() + "\n" + code + "\n")
    return [edge for edge in GRAPH if edge.source != module] + imports_of(module, tree)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("from restorekit.cli.app import main", "floor 2 ops imports floor 8 cli"),
        ("def f():\n    import restorekit.inference.api", "floor 2 ops imports floor 5 inference"),
        ("import restorekit\nrestorekit.denoise", "floor 2 ops imports floor 5 inference"),
        ("from restorekit import restore_files", "floor 2 ops imports floor 6 batch"),
        ("from restorekit.batch import Summary", "floor 2 ops imports floor 6 batch"),
        ("COMMAND = 'restorekit.train.loop:train'", "floor 2 ops imports floor 6 train"),
    ],
)
def test_an_upward_import_is_caught(code: str, expected: str):
    """However it is written: module or function level, a lazy name, a command string."""
    wrong = floor_violations(with_line("restorekit.ops._backend", code))
    assert len(wrong) == 1 and expected in wrong[0] and wrong[0].startswith("restorekit.ops._backend:")


def test_a_peer_import_is_caught():
    wrong = floor_violations(with_line("restorekit.batch._plan", "from restorekit.train.config import ModelConfig"))
    assert len(wrong) == 1 and "floor 6 batch imports floor 6 train" in wrong[0]


def test_a_circle_is_caught():
    """A function-level import that closes a circle on one floor: _backend → malleable_conv → _backend."""
    graph = with_line("restorekit.ops._backend", "def f():\n    from restorekit.ops.malleable_conv import BACKENDS")
    cycle = [str(e) for e in find_cycle(graph)]
    assert len(cycle) == 2 and {c.partition(":")[0] for c in cycle} == {
        "restorekit.ops._backend",
        "restorekit.ops.malleable_conv",
    }


def test_a_circle_is_reported_in_order():
    edges = [Import("a", "b", 1), Import("b", "c", 2), Import("c", "a", 3), Import("c", "d", 4)]
    assert [str(e) for e in find_cycle(edges)] == ["a:1 → b", "b:2 → c", "c:3 → a"]
    assert find_cycle(edges[1:]) == []


def test_every_package_is_installed():
    """``pyproject.toml`` lists packages one by one: a new one must be added there, or ``pip install .`` drops it."""
    tomllib = pytest.importorskip("tomllib")
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(PACKAGES - set(listed)) == []
