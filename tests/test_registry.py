"""gmv_store.registry: lazy "module:Attr" entries, named errors, missing optional packages."""
import subprocess
import sys

import pytest

from gmv_store.errors import BadInput, MissingDependency, UnknownBackend
from gmv_store.registry import Registry


def test_declared_entries_import_on_first_lookup_only():
    code = ("import sys; from gmv_store.registry import Registry; r = Registry('thing'); "
            "r.declare('dec', 'json.decoder:JSONDecoder'); assert r.names() == ['dec']; "
            "assert 'json.decoder' not in sys.modules; assert r.get('dec').__name__ == 'JSONDecoder'; "
            "assert 'json.decoder' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_items_and_unknown_name():
    r = Registry("profile", hint=" (see docs)")
    r.add("b", {"x": 1})
    r.declare("a", "fractions:Fraction")
    assert r.names() == ["b", "a"] and list(r) == ["b", "a"] and "a" in r and "c" not in r
    assert [n for n, _ in r.items()] == ["b", "a"] and r.get("a").__name__ == "Fraction"
    with pytest.raises(UnknownBackend, match=r"unknown profile 'c'; choose one of: b, a \(see docs\)"):
        r.get("c")
    with pytest.raises(BadInput, match="unknown generator 'c'"):
        Registry("generator", error=BadInput).get("c")
    with pytest.raises(ValueError, match="registered twice"):
        r.add("b", {})
    with pytest.raises(ValueError, match="module:Attr"):
        r.declare("d", "no_colon")


def test_a_missing_optional_package_names_itself(tmp_path, monkeypatch):
    (tmp_path / "gmv_fake_backend.py").write_text("import gmv_no_such_package\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = Registry("embedder")
    r.declare("fake", "gmv_fake_backend:X")
    with pytest.raises(MissingDependency, match="embedder 'fake' needs the 'gmv_no_such_package' package"):
        r.get("fake")
    r.declare("typo", "gmv_no_such_module:X")  # a wrong declaration is a bug, not a missing package
    with pytest.raises(ModuleNotFoundError):
        r.get("typo")


def test_each_entry_says_where_it_comes_from():
    r = Registry("embedder")
    r.declare("mine", "fractions:Fraction")
    r.declare("theirs", "decimal:Decimal", origin="plugin gmv-x 1.0")
    r.add("value", 3)
    assert [r.origin(n) for n in r] == ["built-in", "plugin gmv-x 1.0", "built-in"]
    with pytest.raises(UnknownBackend, match="unknown embedder 'nope'"):
        r.origin("nope")
