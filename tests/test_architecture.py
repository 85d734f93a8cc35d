"""The shape of the code (docs/architecture.md): layers that import only downward, no import
circles, small modules, and a CLI whose import loads no heavy library."""
import ast
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gmv_store", "ingest", "query")
MAX_LINES = 400

# lowest first; a module may import its own layer or lower ones, never a higher one
LAYERS = [
    ("core", ("gmv_store.errors", "gmv_store.config", "gmv_store.images", "gmv_store.datasets", "gmv_store.valuation",
              "gmv_store.progress", "gmv_store.output", "gmv_store.lock", "gmv_store.ledger", "gmv_store.migrate",
              "gmv_store.registry", "gmv_store.diskspace", "gmv_store.sources", "gmv_store.vectors",
              "gmv_store.backends", "gmv_store.generators", "gmv_store.integrity", "gmv_store.store", "gmv_store.distributed")),
    ("pipelines", ("ingest", "query")),
    ("api", ("gmv_store.api", "gmv_store.handle", "gmv_store.status", "gmv_store.repair", "gmv_store.demo",
             "gmv_store.eval", "gmv_store.export", "gmv_store")),
    ("edge", ("gmv_store.cli", "gmv_store.web", "gmv_store.__main__")),
]


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Product modules `name` imports anywhere in its body (lazy imports count too)."""
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
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = None


def graph() -> dict[str, set[str]]:
    global GRAPH
    if GRAPH is None:
        mods = modules()
        GRAPH = {m: imports(m, p, set(mods)) for m, p in mods.items()}
    return GRAPH


def test_nothing_imports_upward():
    upward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
              for a, deps in graph().items() for b in deps if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    g = graph()
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
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
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_module_over_400_lines():
    big = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, big


def test_cli_import_loads_no_heavy_library():
    code = ("import sys, gmv_store.cli; "
            "print(','.join(m for m in ('torch', 'sklearn', 'PIL', 'pandas', 'duckdb', 'numpy', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "", f"importing the CLI loaded: {out.strip()}"


def test_layers_name_only_existing_modules():
    names = set(modules())
    for _, prefixes in LAYERS:
        for p in prefixes:
            if p in ("gmv_store.diskspace", "gmv_store.web", "gmv_store.export"):
                continue  # places kept for modules other work adds
            assert any(n == p or n.startswith(p + ".") for n in names), p
