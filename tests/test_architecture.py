"""Architecture: code flows one way. ``pipelines/`` wires and does the IO; ``features/``
and ``models/`` compute. No import cycle among our packages, and nothing under
``features/`` or ``models/`` imports ``pipelines`` or touches files.

Read from the source with :mod:`ast` (nothing is imported), so it is fast and sees the
imports inside functions too: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("healthscore", "features", "models", "pipelines")
PURE = ("features", "models")

# Modules whose import means the code reads or writes files, or talks to a store.
IO_MODULES = {"os", "shutil", "tempfile", "pathlib", "glob", "io", "pickle", "joblib", "mlflow",
              "sqlite3", "duckdb", "pyarrow.parquet", "pyarrow.csv", "pyarrow.dataset",
              "importlib.resources", "requests", "urllib", "yaml"}
# Calls that read or write files whatever object they hang on.
IO_CALLS = {"open", "read_csv", "read_parquet", "read_excel", "read_json", "read_feather",
            "read_pickle", "read_table", "to_csv", "to_parquet", "to_excel", "to_json",
            "to_feather", "to_pickle", "to_hdf", "to_sql", "read_text", "write_text",
            "read_bytes", "write_bytes", "mkdir", "unlink", "rmdir", "glob", "rglob",
            "savefig", "savetxt", "loadtxt", "save", "load", "dump", "connect"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:``: they never run, so they are no dependency."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imported(tree: ast.AST, module: str, known: set[str]) -> set[str]:
    """Every module (ours or not) ``tree`` imports, at the top or inside a function;
    ``from a import b`` counts as ``a.b`` when that is a module of ours."""
    skip = _type_checking_nodes(tree)
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package
                package = module.split(".")[: -node.level] if module not in PACKAGES else [module]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.add(full if full in known else base)
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (resolved to the longest module that exists)."""
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in imported(ast.parse(path.read_text(encoding="utf-8")), name, known):
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and ".".join(parts) != name:
                edges.add(".".join(parts))
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module: each is a cycle."""
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = {m: reach(m) for m in graph}
    found = set()
    for m in graph:
        component = frozenset({m} | {n for n in reachable[m] if m in reachable[n]})
        if len(component) > 1:
            found.add(component)
    return sorted(sorted(c) for c in found)


def io_uses(tree: ast.AST) -> list[str]:
    """File IO in ``tree``: IO modules imported and IO calls made, with line numbers."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names])
            for name in names:
                if name in IO_MODULES or name.split(".")[0] in IO_MODULES - {"importlib", "pyarrow"}:
                    found.append(f"line {node.lineno}: imports {name}")
                    break
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in IO_CALLS:
                found.append(f"line {node.lineno}: calls {ast.unparse(func)}()")
    return found


MODULES = our_modules()
GRAPH = import_graph(MODULES)


def test_the_graph_is_read():
    # The checks below mean something only if the graph holds the edges we know of.
    assert {"pipelines.score", "pipelines.monitor", "models.monitoring", "features.engine"} <= set(GRAPH)
    assert "pipelines.monitor" in GRAPH["pipelines.score"]
    assert "models.monitoring" in GRAPH["pipelines.monitor"]


def test_no_import_cycle():
    found = cycles(GRAPH)
    assert not found, "import cycles (each line one cycle):\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] in PURE))
def test_pure_packages_do_not_import_pipelines(module):
    wrong = sorted(m for m in GRAPH[module] if m.split(".")[0] == "pipelines")
    assert not wrong, f"{module} imports {', '.join(wrong)}: only pipelines/ may depend on pipelines/"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] in PURE))
def test_pure_packages_do_no_file_io(module):
    uses = io_uses(ast.parse(MODULES[module].read_text(encoding="utf-8")))
    assert not uses, f"{module} does file IO (that belongs in pipelines/): " + "; ".join(uses)


# The checker itself, on a tiny made-up tree, so a green run above means something.

def test_checker_finds_a_cycle_and_io(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "a.py").write_text("def f():\n    from pipelines import b\n")
    (tmp_path / "pipelines" / "b.py").write_text("from pipelines.a import f\n")
    (tmp_path / "pipelines" / "c.py").write_text("from pipelines import a\n")
    (tmp_path / "models" / "m.py").write_text(
        "import pandas as pd\nfrom pipelines.c import x\n\ndef g(p):\n    return pd.read_csv(p)\n")
    modules = our_modules(tmp_path)
    graph = import_graph(modules)
    assert cycles(graph) == [["pipelines.a", "pipelines.b"]]
    assert graph["models.m"] == {"pipelines.c"}
    assert io_uses(ast.parse(modules["models.m"].read_text())) == ["line 5: calls pd.read_csv()"]
    assert io_uses(ast.parse("from pathlib import Path\n")) == ["line 1: imports pathlib"]


def test_the_model_code_imports_without_the_metric_engine():
    """A logged model's virtual environment holds only its requirements
    (pipelines.registry.REQUIREMENTS): no Ibis, no DuckDB. Everything the model loads
    must import without them."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['ibis'] = None; sys.modules['duckdb'] = None\n"
            "import pipelines.pyfunc, models.churn_model, models.drivers, models.scorecard, "
            "models.training, models.health, models.renewal, models.observations")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
