"""Type hints on every public function (issue 18 item 6): each public function and method of the
product modules (gmv_store/, ingest/, query/) annotates every parameter (self/cls aside) and its
return. An AST check, so it needs no import of the modules and no mypy run."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gmv_store", "ingest", "query")

# Modules that still have public functions without full hints: a debt, to shrink to nothing.
# A module not listed here that misses a hint fails the test; a listed one that has become
# clean fails the next test until it is taken off.
NOT_ANNOTATED_YET: tuple[str, ...] = ()  # empty since issue 18: keep it so


def modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[0] in ("ingest", "query"):  # installed as gmv_store.ingest, gmv_store.query
                parts.insert(0, "gmv_store")
            out[".".join(parts)] = f
    return out


def _missing(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    a = fn.args
    params = [*a.posonlyargs, *a.args]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    if method and not static and params and params[0].arg in ("self", "cls"):
        params = params[1:]
    params += a.kwonlyargs + [p for p in (a.vararg, a.kwarg) if p is not None]
    out = [p.arg for p in params if p.annotation is None]
    if fn.returns is None:
        out.append("return")
    return out


def unannotated(source: str) -> list[str]:
    """'name: what is missing' for each public function or method in `source` (a module's text)
    that lacks a hint. Public: its name and every enclosing class name start with no `_`;
    functions nested in functions are not public."""
    found = []

    def walk(body: list[ast.stmt], prefix: str, method: bool) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                missing = _missing(node, method)
                if missing:
                    found.append(f"{prefix}{node.name}(line {node.lineno}): {', '.join(missing)}")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                walk(node.body, f"{prefix}{node.name}.", True)
            elif isinstance(node, (ast.If, ast.Try)):  # `if TYPE_CHECKING:`, `try: import ...`
                for part in (node.body, node.orelse, *(h.body for h in getattr(node, "handlers", []))):
                    walk(part, prefix, method)

    walk(ast.parse(source).body, "", False)
    return found


def debts(mods: dict[str, Path]) -> dict[str, list[str]]:
    return {m: u for m, p in mods.items() if (u := unannotated(p.read_text()))}


def test_every_public_function_has_type_hints():
    mods = modules()
    assert "gmv_store.api" in mods and "gmv_store.ingest.write" in mods, "the walk found the product modules"
    bad = {m: u for m, u in debts(mods).items() if m not in NOT_ANNOTATED_YET}
    assert not bad, "public functions without full type hints (annotate every parameter and the return):\n" + \
        "\n".join(f"{m}: {u}" for m, us in bad.items() for u in us)


def test_hint_debt_names_only_modules_that_still_lack_hints():
    mods = modules()
    owing = debts(mods)
    done = [m for m in NOT_ANNOTATED_YET if m in mods and m not in owing]
    gone = [m for m in NOT_ANNOTATED_YET if m not in mods]
    assert not done + gone, f"remove from NOT_ANNOTATED_YET (fully annotated now, or no such module): {done + gone}"


def test_the_check_fails_on_missing_hints(tmp_path):
    source = '''
import typing

def good(a: int, *rest: str, flag: bool = False, **kw: object) -> None: ...

def no_return(a: int): ...

def no_param(a, b: int) -> int: ...

async def no_kwarg(*, k) -> None: ...

def _private(a): ...

def outer() -> None:
    def inner(x): ...

class Thing:
    def method(self, x) -> None: ...
    @classmethod
    def make(cls) -> "Thing": ...
    @staticmethod
    def static(self) -> None: ...
    def __init__(self, x): ...
    class Inner:
        def deep(self): ...

class _Hidden:
    def open(self, x): ...

if typing.TYPE_CHECKING:
    def guarded(x) -> None: ...
'''
    found = unannotated(source)
    assert [f.split("(")[0] + f.split(":", 1)[1] for f in found] == [
        "no_return return", "no_param a", "no_kwarg k", "Thing.method x", "Thing.static self",
        "Thing.Inner.deep return", "guarded x"]
    # and a tree holding such a module fails the check that the real tree must pass
    (tmp_path / "gmv_store").mkdir()
    (tmp_path / "gmv_store" / "__init__.py").write_text("def ok() -> None: ...\n")
    (tmp_path / "gmv_store" / "bad.py").write_text(source)
    assert list(debts(modules(tmp_path, ("gmv_store",)))) == ["gmv_store.bad"]
