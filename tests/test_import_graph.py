"""The package import graph has no cycles and stacks in one direction (docs/architecture.md).

Parses every module under kestrel/ with `ast` (no imports run), so lazy imports inside functions
count too: a circle hidden in a function body is still a circle. Not edges: imports under
`if TYPE_CHECKING:` (never executed; annotations only) and a package's `__init__` importing its
own submodules (its public facade or a factory). The command-line modules (`kestrel/cli.py`,
`kestrel/*/cli.py`, `kestrel/demo.py`) form the top layer: they wire packages together, so in the
package graph they are one node above every library package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "kestrel"


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The longest kestrel module that `name` (a module or a name in one) refers to."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()  # nodes under `if TYPE_CHECKING:`
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(f"{base}.{a.name}" for a in node.names)  # resolved down to base below
    out = {r for n in found if n.startswith("kestrel") and (r := _resolve(n, mods)) is not None}
    out.discard(mod)
    if path.name == "__init__.py":  # the facade of its own submodules
        out = {o for o in out if not o.startswith(mod + ".")}
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


CLI_LAYER = "kestrel (command line)"


def _package(mod: str) -> str:
    """kestrel.server.app -> kestrel.server; a command-line module -> the CLI layer; other
    top-level modules (kestrel.errors) are their own node."""
    parts = mod.split(".")
    if parts[-1] in ("cli", "__main__", "demo"):
        return CLI_LAYER
    return ".".join(parts[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_parser_sees_known_edges() -> None:
    """The graph is not vacuous: imports we know of are found, lazy ones included."""
    g = _graph()
    assert "kestrel.klv.st0903_sets" in g["kestrel.klv.st0903"]  # `from . import st0903_sets`
    assert "kestrel.pki.tls" in g["kestrel.server.app"]
    assert "kestrel.ped.runner" in g["kestrel.demo"]  # imported inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _package("kestrel.server.cli") == CLI_LAYER and _package("kestrel.server.app") == "kestrel.server"


def test_no_module_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_packages_stack_in_one_direction() -> None:
    pkg_graph: dict[str, set[str]] = {}
    for mod, deps in _graph().items():
        p = _package(mod)
        pkg_graph.setdefault(p, set()).update(_package(d) for d in deps if _package(d) != p)
    assert _cycles(pkg_graph) == []
    assert pkg_graph["kestrel.errors"] == set() and not any(CLI_LAYER in deps for deps in pkg_graph.values())


def test_library_code_never_imports_the_cli() -> None:
    """Only the CLI maps errors to exit codes; library code raises kestrel.errors types."""
    g = _graph()
    users = sorted(m for m, deps in g.items() if "kestrel.cli" in deps and m != "kestrel.__main__")
    assert users == [], f"{users} import kestrel.cli: raise kestrel.errors.BadInput & co instead"


def test_ped_does_not_import_the_server() -> None:
    """PED pushes over TLS with kestrel.pki; it does not depend on the TAK server."""
    g = _graph()
    bad = sorted((m, d) for m, deps in g.items() if m.startswith("kestrel.ped") for d in deps
                 if d.startswith("kestrel.server"))
    assert bad == []


def test_errors_module_is_the_bottom() -> None:
    assert _graph()["kestrel.errors"] == set()
