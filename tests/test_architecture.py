"""The shape of the code (docs/architecture.md): layers that import only downward, no import
circles, small modules, and a CLI whose import loads no heavy library."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gmv_store", "ingest", "query")
# The repository's top-level ingest/ and query/ folders are installed inside the one namespace
# (linked as gmv_store/ingest and gmv_store/query): their modules are gmv_store.ingest.*, ...
NAMESPACE = {"ingest": "gmv_store.ingest", "query": "gmv_store.query"}
MAX_LINES = 400

# Lowest first; a module may import its own layer or lower ones, never a higher one. Every
# product module must be listed: "pkg.*" is a package and everything under it, any other
# entry is that one module exactly (so `gmv_store` is the package's __init__ alone, and a new
# top-level module fails until it is placed). To place a new module, add its name here, or
# put it in a package already listed with ".*".
LAYERS = [
    ("core", ("gmv_store.errors", "gmv_store.config", "gmv_store.images", "gmv_store.datasets", "gmv_store.valuation",
              "gmv_store.progress", "gmv_store.collector", "gmv_store.output", "gmv_store.lock", "gmv_store.ledger.*", "gmv_store.migrate", "gmv_store.options",
              "gmv_store.registry", "gmv_store.diskspace", "gmv_store.ids", "gmv_store.integrity", "gmv_store.sources.*", "gmv_store.vectors.*",
              "gmv_store.backends.*", "gmv_store.generators.*", "gmv_store.store", "gmv_store.journaled",
              "gmv_store.distributed.*")),
    ("pipelines", ("gmv_store.ingest.*", "gmv_store.query.*")),
    ("api", ("gmv_store", "gmv_store.api", "gmv_store.api_read", "gmv_store.handle", "gmv_store.status", "gmv_store.repair", "gmv_store.repair_points", "gmv_store.repair_vectors", "gmv_store.demo",
             "gmv_store.eval.*", "gmv_store.export")),
    ("edge", ("gmv_store.cli.*", "gmv_store.web.*", "gmv_store.__main__")),
]

# Imports that the layers allow but the design does not: (importer, imported, why); each side
# is a module, or "pkg.*" for a package and everything under it.
FORBIDDEN = [
    ("gmv_store.ingest.*", "gmv_store.query.refresh", "refresh after ingest is decided in the api layer (api.ingest), not in ingest"),
    ("gmv_store.ingest.*", "gmv_store.query.settle", "refresh after ingest is decided in the api layer (api.ingest), not in ingest"),
]

# Only these run SQL (issue 18): the ledger package owns every table; `query.sql` runs the
# user's ad-hoc read-only SQL; `gmv_store.migrate` applies migrations/*.sql.
SQL_OWNERS = ("gmv_store.ledger.*", "gmv_store.query.sql", "gmv_store.migrate")
# Modules whose SQL has not moved into the ledger package yet: each entry is a debt, to shrink
# to nothing. A module not listed here that runs SQL fails the test.
SQL_NOT_MOVED_YET: tuple[str, ...] = ()  # empty since issue 18: keep it so
SQL_CALLS = {"execute", "executemany", "sql"}  # a DuckDB connection's ways to run a statement
# `api.sql(...)` is the Python API's ad-hoc SQL (gmv_store.query.sql's fenced, read-only run_sql), not a
# connection's: the CLI's `gmv sql` and `GmvStore.sql` call it
SQL_API_MODULES = {"api"}
SQL_HELPERS = {"rows", "insert_columns"}  # ledger helpers that take a table name or a statement


def sql_uses(path: Path) -> list[str]:
    """Where a module runs SQL: calls of `.execute`/`.executemany`/`.sql` on anything, and
    imports of the ledger helpers that take SQL or a table name."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            if isinstance(node.func.value, ast.Name) and node.func.value.id in SQL_API_MODULES:
                continue
            out.append(f"line {node.lineno}: .{node.func.attr}(")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] in ("ledger", "connection"):
            out += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in SQL_HELPERS]
    return out


def sql_outside_ledger(mods: dict[str, Path], allowed=SQL_OWNERS + SQL_NOT_MOVED_YET) -> list[str]:
    return sorted(f"{m} {use}" for m, p in mods.items() if not any(matches(m, e) for e in allowed)
                  for use in sql_uses(p))


def modules(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for f in (root / pkg).rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            parts[0] = NAMESPACE.get(parts[0], parts[0])
            out[".".join(parts)] = f
    return out


def matches(module: str, entry: str) -> bool:
    if entry.endswith(".*"):
        return module == entry[:-2] or module.startswith(entry[:-1])
    return module == entry


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The index of the one layer listing `module`, None where no entry does (an error)."""
    found = [i for i, (_, entries) in enumerate(layers) for e in entries if matches(module, e)]
    assert len(found) <= 1, f"{module} is listed in more than one place in LAYERS"
    return found[0] if found else None


def _literal_import_target(node: ast.Call) -> str | None:
    """`importlib.import_module("x.y")`, `import_module("x.y")` or `__import__("x.y")` with a
    string literal: the module it imports."""
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Product modules `name` imports anywhere in its body (lazy imports and
    `importlib.import_module` with a literal name count too)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([mod] if mod else []))
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        elif isinstance(node, ast.Call) and (literal := _literal_import_target(node)):
            targets = [literal]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    mods = modules(root, packages)
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


GRAPH = None


def graph() -> dict[str, set[str]]:
    global GRAPH
    if GRAPH is None:
        GRAPH = import_graph()
    return GRAPH


def unlisted(mods, layers=LAYERS) -> list[str]:
    return sorted(m for m in mods if layer_of(m, layers) is None)


def upward(g: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """Every import of a higher layer, as "a (layer) imports b (layer)"."""
    out = []
    for a, deps in g.items():
        for b in deps:
            la, lb = layer_of(a, layers), layer_of(b, layers)
            if la is not None and lb is not None and lb > la:
                out.append(f"{a} ({layers[la][0]}) imports {b} ({layers[lb][0]})")
    return sorted(out)


def forbidden(g: dict[str, set[str]], rules=FORBIDDEN) -> list[str]:
    return sorted(f"{a} imports {b}: {why}" for a, deps in g.items() for b in deps
                  for src, dst, why in rules if matches(a, src) and matches(b, dst))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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
            # a package importing its own submodules, which import siblings, is no circle
            # unless a submodule imports the package back
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in g:
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer():
    missing = unlisted(modules())
    assert not missing, f"in no layer, add to LAYERS: {missing}"


def test_nothing_imports_upward():
    bad = upward(graph())
    assert not bad, "\n".join(bad)


def test_no_forbidden_imports():
    bad = forbidden(graph())
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    found = cycles(graph())
    assert not found, found


def test_no_module_over_400_lines():
    big = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, big


def test_cli_import_loads_no_heavy_library():
    code = ("import sys, gmv_store.cli; "
            "print(','.join(m for m in ('torch', 'sklearn', 'PIL', 'pandas', 'duckdb', 'numpy', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "", f"importing the CLI loaded: {out.strip()}"


def bare_imports(path: Path) -> list[str]:
    """Imports of the folders' bare names (`query.value` for `gmv_store.query.value`): those
    names are not installed."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        out += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in (*NAMESPACE, "migrations")]
    return out


def test_one_installed_namespace():
    """Only `gmv_store` is installed at the top level; nothing imports the folders' bare names."""
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert [p for p in packages if p.split(".")[0] != "gmv_store"] == []
    for folder in (*NAMESPACE, "migrations"):
        link = ROOT / "gmv_store" / folder
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), f"gmv_store/{folder} -> ../{folder}"
    tree = modules(ROOT, PACKAGES + ("tests", "benchmarks"))
    bad = sorted(f"{m} {b}" for m, p in tree.items() for b in bare_imports(p))
    assert not bad, "import these as gmv_store.<name>:\n" + "\n".join(bad)


def test_only_the_ledger_runs_sql():
    bad = sql_outside_ledger(modules())
    assert not bad, "SQL outside gmv_store/ledger/ (add a function there and call it):\n" + "\n".join(bad)


def test_sql_debt_names_only_modules_that_still_run_sql():
    mods = modules()
    done = [m for m in SQL_NOT_MOVED_YET if m in mods and not sql_uses(mods[m])]
    gone = [m for m in SQL_NOT_MOVED_YET if m not in mods]
    assert not done + gone, f"remove from SQL_NOT_MOVED_YET (no SQL left, or no such module): {done + gone}"


def test_layers_name_only_existing_modules():
    names = set(modules())
    stale = [e for _, entries in LAYERS for e in entries if not any(matches(n, e) for n in names)]
    stale += [e for src, dst, _ in FORBIDDEN for e in (src, dst) if not any(matches(n, e) for n in names)]
    assert not stale, f"LAYERS or FORBIDDEN name no module: {stale}"


def test_the_checks_fail_on_a_tree_that_breaks_each_rule(tmp_path):
    """The checks above, fed a small fake tree that breaks each rule once, find each break."""
    files = {
        "gmv_store/__init__.py": "",
        "gmv_store/errors.py": "import importlib\n\ndef f():\n    return importlib.import_module('gmv_store.cli.x')\n",
        "gmv_store/newthing.py": "",  # listed nowhere: once fell into the api layer by a catch-all prefix
        "gmv_store/cli/__init__.py": "",
        "gmv_store/cli/x.py": "",
        # the Python API's ad-hoc SQL is no connection's; a connection's `.sql(` is
        "gmv_store/cli/y.py": "def f(api, con):\n    api.sql(None, 'SELECT 1')\n    return con.sql('SELECT 2')\n",
        "ingest/__init__.py": "",
        "ingest/pipeline.py": "def run():\n    from gmv_store.query.refresh import refresh\n    import query.sql\n",
        "query/__init__.py": "",
        "query/refresh.py": "from importlib import import_module\nP = import_module('gmv_store.ingest.pipeline')\n",
        "gmv_store/ledger/__init__.py": "",
        "query/lookup.py": "from gmv_store.ledger import rows\n\ndef f(con):\n    return con.execute('SELECT 1')\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    g = import_graph(tmp_path, PACKAGES)
    assert g["gmv_store.errors"] == {"gmv_store.cli.x"}  # importlib.import_module with a literal
    assert g["gmv_store.query.refresh"] == {"gmv_store.ingest.pipeline"}  # a bare import_module too
    assert unlisted(g) == ["gmv_store.newthing"]
    assert upward(g) == ["gmv_store.errors (core) imports gmv_store.cli.x (edge)"]
    assert forbidden(g) == ["gmv_store.ingest.pipeline imports gmv_store.query.refresh: " + FORBIDDEN[0][2]]
    assert cycles(g) == [["gmv_store.ingest.pipeline", "gmv_store.query.refresh"]]
    assert bare_imports(tmp_path / "ingest" / "pipeline.py") == ["line 3: query.sql"]
    assert sql_outside_ledger(modules(tmp_path, PACKAGES), SQL_OWNERS) == [
        "gmv_store.cli.y line 3: .sql(", "gmv_store.query.lookup line 1: imports rows", "gmv_store.query.lookup line 4: .execute("]
