"""The package's shape: the import graph between kie_async
modules, read from the source with ``ast`` (type-only and function-level imports included, as
they tie modules together just the same).

The import cycles are printed (``pytest -s tests/test_layout.py`` shows them) and asserted
absent, and every module sits in one of the package's layers (:data:`LAYERS`) and imports only
from its own layer or the layers above it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import attrs

PACKAGE = Path(__file__).resolve().parent.parent / "kie_async"


#: The layers of kie_async, from the top (imported by all below) down: a module imports only from
#: its own layer or the layers above it, never from one below. A module that needs something of
#: one below it (of KieClient, say) names it with a small ``typing.Protocol`` of its own
#: (``_handle.RecordSource``, ``_bulk_run.Submitter``, ``_download.FileSource``) instead of
#: importing it. A package (``callbacks``, ``testing``) is listed once, for all its modules.
LAYERS: dict[str, tuple[str, ...]] = {
    # errors, policies, retry schedules: nothing about kie.ai's endpoints
    "base": (
        "_text",
        "_version",
        "_logging",
        "_public",
        "_errors",
        "_timeout",
        "_polling",
        "_retry",
    ),
    # one frozen class per task kind: its endpoint, its body, its validation
    "requests": ("_request_core", "_generate_rules", "_generate", "_requests"),
    # what kie.ai answers and what it means: records, the converter, the envelope
    "records": ("_models", "_wire", "_protocol", "_task_errors"),
    # session, the one exchange, timeouts, the answer cap, read retries, the limiter
    "transport": ("_ratelimit", "_redis_limit", "_config", "_http", "_transport"),
    # one task: create it, poll it, hear its callback
    "tasks": ("_submit", "_callback_wait", "_handle", "callbacks"),
    # many tasks: bulk runs, chains, the journal, downloads
    "runs": (
        "_preflight",
        "_journal",
        "_journal_lock",
        "_outcomes",
        "_bulk_poller",
        "_bulk_run",
        "_bulk",
        "_chains",
        "_many",
        "_prices",
        "_budget",
        "_learning",
        "_plan",
        "_download_core",
        "_part_file",
        "_download",
        "_results",
        "_results_download",
    ),
    # KieClient, wiring the layers for the user, and the package's public names
    "facade": ("_calls", "_client", ""),
    # the command line and the fake server (``testing._fast`` is the one to import the facade)
    "tools": (
        "_cli",
        "__main__",
        "testing",
    ),
}


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of a module (by dotted name); KeyError for one not listed."""
    short = module.removeprefix("kie_async").removeprefix(".")
    for index, members in enumerate(LAYERS.values()):
        for member in members:
            if short == member or (member and short.startswith(member + ".")):
                return index
    raise KeyError(module)


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
    assert ("kie_async._calls", "kie_async._download", "lazy") in edges


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


def test_every_module_imports_only_from_its_layer_or_above() -> None:
    """Every kie_async module is placed in a layer, and none imports (at import time, type-only
    or inside a function) from a layer below its own: the shape of issue 11 holds."""
    graph = import_graph(PACKAGE)
    unplaced = []
    for name in graph:
        try:
            layer_of(name)
        except KeyError:
            unplaced.append(name)
    assert unplaced == [], f"put these modules in a layer of LAYERS: {unplaced}"
    names = list(LAYERS)
    upward = [
        f"{i.importer} ({names[layer_of(i.importer)]}) -> {i.imported} "
        f"({names[layer_of(i.imported)]})  (line {i.line}, {i.how})"
        for imports in graph.values()
        for i in imports
        if layer_of(i.imported) > layer_of(i.importer)
    ]
    assert upward == [], "imports from a lower layer:\n" + "\n".join(upward)


def test_the_layer_check_places_packages_and_rejects_unknown_modules() -> None:
    """A package's modules take its layer, the package's own ``__init__`` is the facade, and a
    module nobody placed is not silently given a layer."""
    assert layer_of("kie_async") == list(LAYERS).index("facade")
    assert layer_of("kie_async.callbacks._receiver") == list(LAYERS).index("tasks")
    assert layer_of("kie_async.testing._fast") == list(LAYERS).index("tools")
    assert (
        layer_of("kie_async._errors")
        < layer_of("kie_async._handle")
        < layer_of("kie_async._client")
    )
    try:
        layer_of("kie_async._nowhere")
    except KeyError:
        pass
    else:
        raise AssertionError("an unplaced module was given a layer")


def test_the_transport_knows_nothing_about_tasks() -> None:
    """The transport modules (settings, HTTP helpers, the exchange) import nothing that knows a
    task: no request kind, no record, no task error, no handle; only the protocol's envelope
    (``_protocol``) and ``_wire``'s loopback check."""
    graph = import_graph(PACKAGE)
    allowed_above = {"kie_async._protocol", "kie_async._wire"}
    transport = list(LAYERS).index("transport")
    seen = {
        (i.importer, i.imported)
        for name, imports in graph.items()
        if layer_of(name) == transport
        for i in imports
        if layer_of(i.imported) != transport
        and list(LAYERS)[layer_of(i.imported)] != "base"
        and i.imported not in allowed_above
    }
    assert seen == set()
    assert {"kie_async._transport", "kie_async._config", "kie_async._http"} <= set(graph)
