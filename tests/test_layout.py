"""The package's shape: the folders are the layers.

The import graph between kie_async modules is read from the source with ``ast`` (type-only and
function-level imports included, as they tie modules together just the same). Every module
belongs to a *unit*: its top-level name under ``kie_async/`` (a folder such as ``_bulk`` for all
its modules, or a foundation module such as ``_errors``). :data:`LAYERS` lists the units from
the bottom up; a unit imports only from the units listed before it. No module import cycles, and
the longest import chain, counting a unit as one step, stays short (``pytest -s`` prints it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import attrs

PACKAGE = Path(__file__).resolve().parent.parent / "kie_async"

#: The units of kie_async from the bottom up: each imports only from those listed before it. A
#: unit that needs something of one above it (of KieClient, say) names it with a small
#: ``typing.Protocol`` of its own instead of importing it. ``""`` is ``kie_async/__init__.py``.
LAYERS: tuple[str, ...] = (
    # the foundation: nothing about kie.ai's endpoints
    "_text",  # server text made safe, the key redacted, the library's logging
    "_version",
    "_public",  # public names shown as kie_async.Name
    "_errors",  # the exception tree
    "_policies",  # every setting a user passes, one validator
    "_retry",  # which failures are retried, delays, the retry loop (the one user of backoff)
    # the layers, one folder each
    "_kinds",  # what you ask for: one class per task kind
    "_protocol",  # what kie answers and what it means (pure)
    "_transport",  # how it is sent: the exchange, the limiters
    "callbacks",  # public: kie's callbacks, verified
    "_tasks",  # one task: submit, the handle, the callback race
    "_download",  # result files
    "_bulk",  # many tasks: runs, chains, the journal, budgets
    "_client",  # KieClient, one class
    "",  # kie_async/__init__.py: the public names
    # the tools
    "testing",  # public: the fake kie.ai (built without the SDK)
    "_cli",  # the kie-async command
    "__main__",
)

#: The longest import chain, counting a unit (a folder, or a foundation module) as one step.
MAX_CHAIN = 12


def unit_of(module: str) -> str:
    """The unit of a module (by dotted name): its top-level name under ``kie_async``."""
    return module.removeprefix("kie_async").removeprefix(".").split(".")[0]


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of a module's unit; KeyError for one not listed."""
    unit = unit_of(module)
    if unit not in LAYERS:
        raise KeyError(module)
    return LAYERS.index(unit)


@attrs.frozen
class Import:
    """One import of a kie_async module by another, and where in the importer it stands."""

    importer: str
    imported: str
    line: int
    #: ``"top"`` (at import time), ``"type"`` (under ``if TYPE_CHECKING:``) or ``"lazy"``
    #: (inside a function, run when it is called).
    how: str


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package under ``package``, by dotted name (a package by its own
    name, for its ``__init__.py``)."""
    names: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement of a module, with how it runs (see :attr:`Import.how`)."""

    def visit(node: ast.AST, how: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, how
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, "type" if how == "type" else "lazy")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    yield from visit(ast.Module(body=[statement], type_ignores=[]), "type")
                for statement in child.orelse:
                    yield from visit(ast.Module(body=[statement], type_ignores=[]), how)
            else:
                yield from visit(child, how)

    yield from visit(tree, "top")


def imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """The imports of other modules of the package made by module ``name`` (at ``path``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node, how in _import_nodes(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.append(submodule if submodule in modules else source)
        for target in dict.fromkeys(targets):  # once per statement, in order
            if target in modules and target != name:
                found.append(Import(name, target, node.lineno, how))
    return found


def import_graph(package: Path) -> dict[str, list[Import]]:
    """Each module's imports of the package's other modules."""
    modules = module_names(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: Mapping[str, Iterable[Import]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each
    sorted, in sorted order: every import cycle lies within one of them."""
    edges = {name: sorted({i.imported for i in imports}) for name, imports in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return sorted(found)


def describe_cycles(graph: Mapping[str, Iterable[Import]]) -> str:
    """The cycles with the imports that make them, one line each, for a reader to act on."""
    lines = []
    for component in cycles(graph):
        lines.append("cycle: " + ", ".join(component))
        members = set(component)
        for name in component:
            for edge in graph[name]:
                if edge.imported in members:
                    lines.append(
                        f"    {edge.importer} -> {edge.imported}  (line {edge.line}, {edge.how})"
                    )
    return "\n".join(lines) or "no import cycles"


def test_the_graph_covers_every_module_and_its_subpackages() -> None:
    """The import graph holds every module, the testing and callbacks packages' own modules
    too, and sees the imports a reader knows are there (type-only and lazy ones included)."""
    graph = import_graph(PACKAGE)
    assert set(graph) == set(module_names(PACKAGE))
    assert {"kie_async.testing._server", "kie_async.callbacks._receiver"} <= set(graph)
    edges = {(i.importer, i.imported, i.how) for imports in graph.values() for i in imports}
    assert ("kie_async.testing._fast", "kie_async._client", "top") in edges
    assert ("kie_async._client", "kie_async.callbacks", "type") in edges
    assert ("kie_async._client", "kie_async._download.fetch", "lazy") in edges


def test_the_fake_server_is_built_without_the_sdk() -> None:
    """No module of kie_async.testing but ``_fast`` (fast_client, which makes a KieClient)
    imports from the rest of kie_async, so the fake's answers come from plain dicts and a
    serialisation bug of the SDK cannot hide itself. (``_public``, which only names the
    package's public classes as ``kie_async.testing.Name``, builds no answer.)"""
    graph = import_graph(PACKAGE)
    outside = {
        (i.importer, i.imported)
        for name, imports in graph.items()
        if name.startswith("kie_async.testing") and name != "kie_async.testing._fast"
        for i in imports
        if not i.imported.startswith("kie_async.testing") and i.imported != "kie_async._public"
    }
    assert outside == set()


def test_the_cycle_finder_sees_type_only_and_lazy_imports(tmp_path: Path) -> None:
    """In a made-up package, a cycle closed only by a TYPE_CHECKING import, and one closed only
    by a function-level import, are both found; an import chain without a cycle is not."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "from . import a\n",
        "a.py": "from . import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import X\n",
        "c.py": "from .sub import d\n",
        "sub/__init__.py": "",
        "sub/d.py": "def f():\n    from ..c import Y\n",
        "e.py": "import pkg.a\n",
    }
    for relative, source in sources.items():
        (package / relative).write_text(source, encoding="utf-8")
    graph = import_graph(package)
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub.d"]]
    hows = {(i.importer, i.imported): i.how for imports in graph.values() for i in imports}
    assert hows[("pkg.b", "pkg.a")] == "type"
    assert hows[("pkg.sub.d", "pkg.c")] == "lazy"
    assert hows[("pkg.e", "pkg.a")] == "top"
    assert "pkg.b -> pkg.a  (line 3, type)" in describe_cycles(graph)


def test_import_cycles_are_reported() -> None:
    """The import cycles between kie_async modules are printed with the imports that close
    them (``-s`` shows them; the next test asserts there are none)."""
    print("\n" + describe_cycles(import_graph(PACKAGE)))


def test_restructure_leaves_no_import_cycles() -> None:
    """No two kie_async modules import each other, directly or through others, by any import
    (type-only and function-level ones included)."""
    graph = import_graph(PACKAGE)
    assert cycles(graph) == [], describe_cycles(graph)


def unit_graph(graph: Mapping[str, Iterable[Import]]) -> dict[str, set[str]]:
    """Which units each unit imports (a unit's imports of its own modules left out)."""
    edges: dict[str, set[str]] = {}
    for name, imports in graph.items():
        targets = edges.setdefault(unit_of(name), set())
        targets.update(unit_of(i.imported) for i in imports if unit_of(i.imported) != unit_of(name))
    return edges


def longest_chain(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """The longest import chain between units, from the importer down (the graph has no cycle:
    :func:`test_restructure_leaves_no_import_cycles` and the layer test say so)."""
    best: dict[str, list[str]] = {}

    def chain(unit: str) -> list[str]:
        if unit not in best:
            below = [chain(other) for other in sorted(edges.get(unit, ()))]
            best[unit] = [unit, *max(below, key=len, default=[])]
        return best[unit]

    return max((chain(unit) for unit in sorted(edges)), key=len, default=[])


def test_every_unit_imports_only_from_the_units_below() -> None:
    """Every kie_async module's unit (its folder, or the foundation module itself) is listed in
    LAYERS, and no module imports (at import time, type-only or inside a function) from a unit
    listed after its own: the folders are the layers."""
    graph = import_graph(PACKAGE)
    unplaced = sorted({unit_of(name) for name in graph} - set(LAYERS))
    assert unplaced == [], f"put these units in LAYERS: {unplaced}"
    upward = [
        f"{i.importer} -> {i.imported}  (line {i.line}, {i.how})"
        for imports in graph.values()
        for i in imports
        if layer_of(i.imported) > layer_of(i.importer)
    ]
    assert upward == [], "imports from a unit above:\n" + "\n".join(upward)
    assert set(LAYERS) == {unit_of(name) for name in graph}, "LAYERS lists a unit that is gone"


def test_the_longest_import_chain_is_short() -> None:
    """The longest import chain, counting a folder as one step, is at most MAX_CHAIN units
    (``-s`` prints it, and the chain between modules)."""
    graph = import_graph(PACKAGE)
    chain = longest_chain(unit_graph(graph))
    modules = longest_chain(
        {name: [i.imported for i in imports] for name, imports in graph.items()}
    )
    print(f"\nlongest chain: {len(chain)} units: {' -> '.join(u or '__init__' for u in chain)}")
    print(f"longest chain between modules: {len(modules)} modules")
    assert len(chain) <= MAX_CHAIN


def test_the_layer_check_places_folders_and_rejects_unknown_modules() -> None:
    """A folder's modules take its unit, the package's own ``__init__`` is the unit ``""``, and
    a module nobody placed is not silently given a layer."""
    assert unit_of("kie_async") == ""
    assert unit_of("kie_async.callbacks._receiver") == "callbacks"
    assert layer_of("kie_async.testing._fast") == LAYERS.index("testing")
    assert layer_of("kie_async._errors") < layer_of("kie_async") < layer_of("kie_async._cli.bulk")
    assert longest_chain({"a": ["b"], "b": ["c"], "c": [], "d": ["c"]}) == ["a", "b", "c"]
    try:
        layer_of("kie_async._nowhere")
    except KeyError:
        pass
    else:
        raise AssertionError("an unplaced module was given a layer")


def test_the_transport_knows_nothing_about_tasks() -> None:
    """The transport folder (settings, HTTP helpers, the exchange, the limiters) imports nothing
    that knows a task: no request kind, no task error, no handle; only the foundation and the
    protocol (the envelope, and the converter's loopback check)."""
    graph = import_graph(PACKAGE)
    allowed = {"_transport", "_protocol", *LAYERS[: LAYERS.index("_retry") + 1]}
    seen = {
        (i.importer, i.imported)
        for name, imports in graph.items()
        if unit_of(name) == "_transport"
        for i in imports
        if unit_of(i.imported) not in allowed
    }
    assert seen == set()
    assert {"kie_async._transport.exchange", "kie_async._transport.config"} <= set(graph)


def test_the_public_names_are_listed_once() -> None:
    """kie_async's public names live in one table (``_WHERE``: name and defining module), from
    which ``__all__`` derives; the imports type checkers read name the same names from the same
    modules, so the two views cannot drift."""
    import kie_async

    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for_checkers = {
        alias.asname or alias.name: (node.module or "")
        for node, how in _import_nodes(tree)
        if how == "type" and isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert for_checkers == kie_async._WHERE
    assert kie_async.__all__ == sorted(["__version__", *kie_async._WHERE])
