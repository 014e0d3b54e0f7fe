"""The package's shape: rooms that depend one way, no import cycles, pika in one room.

Every import in ``carrot/`` counts, also one written inside a function (only imports
under ``if TYPE_CHECKING:`` are left out): such a lazy import must say why on its line or
the line above (``# lazy: ...``), and it must not hide a cycle. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "carrot"

# Rooms from the bottom up: a module may import its own layer and the layers below.
# The longest matching prefix decides; "carrot" (the package and its entry points:
# commands, apps, checks, admin, urls and the seed's modules) is the top.
LAYERS = {
    "carrot.version": 0,
    "carrot.exceptions": 0,
    "carrot.conf": 1,
    "carrot.messages": 2,
    "carrot.registry": 2,
    "carrot.scheduling.cadence": 2,
    "carrot.scheduling.declaration": 2,
    "carrot.models.lifecycle": 2,
    "carrot.masking": 2,
    "carrot.current": 2,
    "carrot.backends.compat": 2,
    "carrot.observability": 2,
    "carrot.broker": 3,
    "carrot.tasks": 4,
    "carrot.models": 5,
    "carrot.publishing": 6,
    "carrot.scheduling": 6,
    "carrot.discovery": 6,
    "carrot.worker": 7,
    "carrot.monitor": 7,
    "carrot.backends": 7,
    "carrot": 8,
}
LARGEST_MODULE = 400  # lines


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported carrot module
    line: int
    lazy: bool  # written inside a function
    reason: str  # the "# lazy:" comment, for a lazy import


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py")) if "migrations" not in p.parts}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _targets(node: ast.Import | ast.ImportFrom, source: str, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = source.split(".")
        package = package[: len(package) - node.level + (1 if source in _packages(known) else 0)]
        base = ".".join([*package, base] if base else package)
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in known else base)
    return out


def _packages(known: set[str]) -> set[str]:
    return {m for m in known if any(k.startswith(m + ".") for k in known)}


def imports(root: Path = PACKAGE) -> list[Import]:
    found = modules(root)
    known = set(found)
    out = []
    for source, path in found.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        skipped = _type_checking_lines(tree)
        functions = [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skipped:
                continue
            lazy = any(f.lineno < node.lineno <= (f.end_lineno or 0) for f in functions)
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2] if node.lineno > 1 else ""
            reason = next(
                (c.split("# lazy:", 1)[1].strip() for c in (here, above) if "# lazy:" in c), ""
            )
            for target in _targets(node, source, known):
                if target == "carrot" or target.startswith("carrot.") or target == "pika":
                    out.append(Import(source, target, node.lineno, lazy, reason))
                elif target.startswith("pika."):
                    out.append(Import(source, "pika", node.lineno, lazy, reason))
    return out


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (or a self-loop)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def carrot_edges(found: list[Import]) -> list[tuple[str, str]]:
    return [(i.source, i.target) for i in found if i.target != "pika" and i.source != i.target]


# ------------------------------------------------------------------ the rules


def test_no_import_cycles_inside_the_package():
    found = cycles(carrot_edges(imports()))
    assert not found, "modules that import each other in a circle: " + "; ".join(
        " -> ".join(c) for c in found
    )


def test_pika_is_imported_only_by_the_broker_package():
    outside = [
        f"{i.source}:{i.line}"
        for i in imports()
        if i.target == "pika" and not i.source.startswith("carrot.broker")
    ]
    assert not outside, f"pika imported outside carrot/broker: {outside}"


def test_rooms_depend_one_way():
    upward = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in imports()
        if i.target != "pika" and not i.lazy and layer(i.target) > layer(i.source)
    ]
    assert not upward, "imports that point up the layers: " + "; ".join(upward)


def test_every_lazy_import_says_why():
    unexplained = [
        f"{i.source}:{i.line} ({i.target})" for i in imports() if i.lazy and not i.reason
    ]
    assert not unexplained, (
        "imports inside functions need a '# lazy: <reason>' comment (Django's app loading "
        f"is the usual one): {unexplained}"
    )


EXTRAS = ("prometheus_client", "opentelemetry")
EXTRAS_ROOMS = ("carrot.observability", "carrot.monitor.metrics")


def extra_imports(root: Path = PACKAGE) -> list[tuple[str, int, bool]]:
    """Return (module, line, written inside a function) for each import of an extra."""
    out = []
    for source, path in modules(root).items():
        tree = ast.parse(path.read_text())
        functions = [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] in EXTRAS for name in names):
                lazy = any(f.lineno < node.lineno <= (f.end_lineno or 0) for f in functions)
                out.append((source, node.lineno, lazy))
    return out


def test_the_extras_are_imported_only_by_observability_and_only_when_used():
    found = extra_imports()
    assert found, "the check found no imports of the extras at all"
    outside = [f"{m}:{line}" for m, line, _ in found if not m.startswith(EXTRAS_ROOMS)]
    assert not outside, f"prometheus_client/opentelemetry imported outside their rooms: {outside}"
    eager = [f"{m}:{line}" for m, line, lazy in found if not lazy]
    assert not eager, f"imported at module level (a project without the extras breaks): {eager}"


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    large = {name: n for name, n in sizes.items() if n > LARGEST_MODULE}
    assert not large, f"modules over {LARGEST_MODULE} lines (split them by concern): {large}"


# ------------------------------------------------------------------ the check can fail


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A tiny package to show each rule catches what it should."""
    package = tmp_path / "carrot"
    (package / "broker").mkdir(parents=True)
    for name in ("__init__.py", "broker/__init__.py"):
        (package / name).write_text("")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    return package


def test_the_checks_see_cycles_lazy_imports_and_pika(toy):
    (toy / "models.py").write_text("def requeue():\n    from carrot import publishing\n")
    (toy / "publishing.py").write_text("from carrot.models import requeue\nimport pika\n")
    (toy / "broker" / "relay.py").write_text("import pika.exceptions\n")
    found = imports(toy)
    assert cycles(carrot_edges(found)) == [["carrot.models", "carrot.publishing"]]
    assert {(i.source, i.lazy, i.reason) for i in found if i.source == "carrot.models"} == {
        ("carrot.models", True, "")
    }
    assert {i.source for i in found if i.target == "pika"} == {
        "carrot.publishing",
        "carrot.broker.relay",
    }


def test_type_checking_imports_and_explained_lazy_imports(toy):
    (toy / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from carrot.b import B\n"
        "def f():\n"
        "    # lazy: the models are not loaded yet\n"
        "    from carrot import b\n"
    )
    (toy / "b.py").write_text("from carrot import a\n")
    found = imports(toy)
    lazy = [i for i in found if i.source == "carrot.a"]
    assert [(i.target, i.lazy, i.reason) for i in lazy] == [
        ("carrot.b", True, "the models are not loaded yet")
    ]
    assert cycles(carrot_edges(found)) == [["carrot.a", "carrot.b"]]


def test_the_extras_check_sees_eager_and_stray_imports(toy):
    (toy / "observability").mkdir()
    (toy / "observability" / "__init__.py").write_text("")
    (toy / "observability" / "metrics.py").write_text(
        "import prometheus_client\ndef f():\n    from opentelemetry import trace\n"
    )
    (toy / "worker.py").write_text("def g():\n    import opentelemetry.trace\n")
    assert sorted(extra_imports(toy)) == [
        ("carrot.observability.metrics", 1, False),
        ("carrot.observability.metrics", 3, True),
        ("carrot.worker", 2, True),
    ]
