"""The house rules of the code base, checked on its source (docs/architecture.md):
no module imports another's private name, no import circles, SQL only in ``gallery/``,
``print`` only in commands, and the stage folders the tree is meant to show."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "reid_pipeline"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def imports(path: Path, current: str) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import in the file, lazy ones too."""
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = current.split(".") if is_pkg else current.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, *([node.module] if node.module else [])])
            out += [(base, a.name, node.lineno) for a in node.names]
    return out


def owner(name: str) -> str | None:
    """The library module ``name`` lives in (a dotted name may end in a submodule)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def library_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in MODULES.items():
        for target, name, _ in imports(path, mod):
            if not target.startswith("reid_pipeline"):
                continue
            full = f"{target}.{name}" if name else target
            dest = full if full in MODULES else owner(target)
            if dest and dest != mod:
                edges[mod].add(dest)
    return edges


def test_no_module_imports_a_private_name() -> None:
    files = [*PKG.rglob("*.py"), *(ROOT / "tests").glob("*.py")]
    bad = []
    for path in files:
        mod = module_name(path) if PKG in path.parents else f"tests.{path.stem}"
        for target, name, line in imports(path, mod):
            lib = target.startswith("reid_pipeline")
            if lib and name and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{name}")
            elif lib and any(
                p.startswith("_") and not p.startswith("__") for p in target.split(".")
            ):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_circles() -> None:
    """Lazy (function-level) imports count too: a circle is a circle."""
    edges = library_edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in sorted(MODULES):
        if m not in index:
            visit(m)
    assert not circles, circles


def test_sql_lives_in_the_gallery() -> None:
    bad = []
    for mod, path in MODULES.items():
        if mod.startswith("reid_pipeline.gallery"):
            continue
        for target, _, line in imports(path, mod):
            if target.split(".")[0] in ("sqlalchemy", "sqlite3", "psycopg", "alembic"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_print_only_in_commands() -> None:
    """Library code logs; the commands (and the benchmark scripts, which are commands run
    with ``python -m``) print."""
    allowed = ("reid_pipeline.commands", "reid_pipeline.cli", "reid_pipeline.bench")
    bad = []
    for mod, path in MODULES.items():
        if mod.startswith(allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "\n".join(bad)


def test_the_tree_shows_the_stages() -> None:
    """Only the cross-cutting modules sit at the top of the package; every stage is a
    folder."""
    top = sorted(p.stem for p in PKG.glob("*.py"))
    assert top == ["__init__", "__main__", "cli", "errors", "types", "utils"], top
    for stage in (
        "sources",
        "detect",
        "track",
        "embed",
        "match",
        "gallery",
        "pipeline",
        "train",
        "evaluate",
        "datasets",
        "report",
        "demo",
        "bench",
        "config",
        "commands",
    ):
        assert (PKG / stage / "__init__.py").is_file(), stage
