"""The stdlib code-search set: filters, duplicates, splits by module, determinism, errors."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posneg.data import code_search
from posneg.data.code_search import (
    MAX_CODE_CHARS,
    SPLITS,
    CodeSearchData,
    load_code_search,
)

SKIPPED_PARTS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "encodings"}


@pytest.fixture(scope="module")
def stdlib() -> CodeSearchData:
    return load_code_search()


def _digest(data: CodeSearchData) -> str:
    return hashlib.sha256(repr(data.pairs).encode("utf-8")).hexdigest()


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


SUM_BODY = '''
    """Return the sum of two numbers.

    More words that are not part of the query.
    """
    total = a + b
    total = int(total)
    return total
'''


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A tiny source tree exercising every filter."""
    root = tmp_path / "lib"
    _write(root, "pkg/__init__.py", "def add(a, b):" + SUM_BODY)
    _write(
        root,
        "pkg/mod.py",
        '''
        import os


        def _private(x):
            """Return a private thing to nobody."""
            x = 1
            y = 2
            return x + y


        def tiny(x):
            """Add."""
            y = x
            z = y
            return z


        def short(x):
            """Return the value unchanged, e.g. as given. Trailing words."""
            return x


        def signature(x):
            """signature(x) -> int"""
            a = x
            b = a
            return b


        def oneliner(x): "Return one thing on one line."; return x


        @staticmethod
        def decorated(path):
            """Read a file, e.g. a config, and return its lines. More."""
            with open(path) as fh:
                data = fh.read()
            return data.splitlines()


        class Reader:
            """A public class."""

            def read_all(self, n):
                """Read every record from the stream."""
                out = []
                for _ in range(n):
                    out.append(self.read_one())
                return out

            def _hidden(self):
                """Return a hidden value from the reader."""
                a = 1
                b = 2
                return a + b


        class _Internal:
            def visible(self):
                """Return a value from an internal class."""
                a = 1
                b = 2
                return a + b
        ''',
    )
    # same query as pkg.add (case differs) -> dropped; same code as pkg.add -> dropped
    _write(
        root,
        "pkg/other.py",
        "def add2(a, b):\n    '''RETURN the sum of two numbers.'''\n"
        "    q = 1\n    r = 2\n    return q + r\n"
        "\n\ndef add(a, b):\n    '''Compute a total of the two inputs.'''\n"
        "    total = a + b\n    total = int(total)\n    return total\n",
    )
    body = "    x = 1\n    y = 2\n    return x + y\n"
    _write(
        root, "tests/helpers.py", 'def helper():\n    """Return a helper value here."""\n' + body
    )
    _write(root, "pkg/test_mod.py", 'def check():\n    """Return a checked value here."""\n' + body)
    _write(
        root, "idlelib/window.py", 'def win():\n    """Return a window for the shell."""\n' + body
    )
    _write(
        root,
        "_private_mod.py",
        'def pub():\n    """Return a value from a private module."""\n' + body,
    )
    _write(root, "broken.py", 'def broken(:\n    """Return a broken value here."""\n' + body)
    (root / "latin.py").write_bytes(
        b'def latin():\n    """Return caf\xe9 from a latin file."""\n' + body.encode()
    )
    return root


# --- the built-in stdlib set --------------------------------------------------------------------


def test_stdlib_set_size_fields_and_filters(stdlib: CodeSearchData) -> None:
    assert 2000 <= len(stdlib) <= 6000
    ids = [p.id for p in stdlib.pairs]
    assert len(set(ids)) == len(ids)
    for p in stdlib.pairs:
        assert p.split in SPLITS
        assert p.id.startswith(p.module + ".")
        parts = p.id.split(".")
        assert not SKIPPED_PARTS & set(p.module.split(".")), p.id
        assert not any(part.startswith("_") for part in parts), p.id
        assert len(re.findall(r"[A-Za-z]+", p.query)) >= 3 and p.query == p.query.strip()
        assert sum(bool(line.strip()) for line in p.code.splitlines()) >= 3
        assert len(p.code) <= MAX_CODE_CHARS
        assert p.code == p.code.strip("\n") and not p.code[0].isspace()
    assert all(stdlib.counts()[s] > 0 for s in SPLITS)


def test_stdlib_code_has_its_docstring_removed(stdlib: CodeSearchData) -> None:
    checked = 0
    for p in stdlib.pairs:
        if len(p.code) >= MAX_CODE_CHARS - 200:
            continue  # may have been cut mid-function
        tree = ast.parse(p.code)
        func = tree.body[0]
        assert isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)), p.id
        assert func.name == p.id.rsplit(".", 1)[1]
        assert ast.get_docstring(func) is None, p.id
        checked += 1
    assert checked > 0.9 * len(stdlib)


def test_stdlib_splits_are_disjoint_by_module(stdlib: CodeSearchData) -> None:
    modules = {s: {p.module for p in stdlib.split(s)} for s in SPLITS}
    assert not modules["train"] & modules["dev"]
    assert not modules["train"] & modules["test"]
    assert not modules["dev"] & modules["test"]
    n_modules = sum(len(m) for m in modules.values())
    assert abs(len(modules["test"]) / n_modules - 0.2) < 0.1
    assert abs(len(modules["dev"]) / n_modules - 0.1) < 0.08
    assert sum(stdlib.counts().values()) == len(stdlib)


def test_stdlib_has_no_duplicate_query_or_code(stdlib: CodeSearchData) -> None:
    queries = [" ".join(p.query.casefold().split()) for p in stdlib.pairs]
    codes = [p.code for p in stdlib.pairs]
    assert len(set(queries)) == len(queries)
    assert len(set(codes)) == len(codes)


def test_helpers_align_with_split(stdlib: CodeSearchData) -> None:
    test = stdlib.split("test")
    assert stdlib.queries("test") == [p.query for p in test]
    assert stdlib.corpus("test") == [p.code for p in test]
    assert stdlib.ids("test") == [p.id for p in test]


def test_seed_changes_split_and_fractions_are_obeyed(stdlib: CodeSearchData) -> None:
    other = load_code_search(seed=1)
    assert [p.id for p in other.pairs] == [p.id for p in stdlib.pairs]
    assert [p.split for p in other.pairs] != [p.split for p in stdlib.pairs]
    no_test = load_code_search(test_fraction=0.0, dev_fraction=0.0)
    assert no_test.counts() == {"train": len(stdlib), "dev": 0, "test": 0}


def test_max_pairs_is_a_stable_spread_subset(stdlib: CodeSearchData) -> None:
    small = load_code_search(max_pairs=300)
    assert len(small) == 300
    assert set(small.pairs) <= set(stdlib.pairs)
    assert small == load_code_search(max_pairs=300)
    order = {p.id: i for i, p in enumerate(stdlib.pairs)}
    positions = [order[p.id] for p in small.pairs]
    assert positions == sorted(positions)  # walk order kept
    assert all(small.counts()[s] > 0 for s in SPLITS)
    assert load_code_search(max_pairs=10**6) == stdlib


# --- the filters on a constructed tree -------------------------------------------------------


def test_filters_on_a_constructed_tree(fake_root: Path) -> None:
    data = load_code_search(root=fake_root)
    by_id = {p.id: p for p in data.pairs}
    assert set(by_id) == {"pkg.add", "pkg.mod.decorated", "pkg.mod.Reader.read_all"}
    add = by_id["pkg.add"]
    assert add.module == "pkg"
    assert add.query == "Return the sum of two numbers."
    assert add.code == "def add(a, b):\n    total = a + b\n    total = int(total)\n    return total"
    read_all = by_id["pkg.mod.Reader.read_all"]
    assert read_all.query == "Read every record from the stream."
    assert read_all.code.startswith("def read_all(self, n):\n    out = []")
    decorated = by_id["pkg.mod.decorated"]
    assert decorated.query == "Read a file, e.g. a config, and return its lines."
    assert decorated.code.startswith("@staticmethod\ndef decorated(path):\n    with open")


def test_long_code_is_cut_at_a_line_break(tmp_path: Path) -> None:
    lines = "".join(f"    value_{i} = compute_something_long({i})\n" for i in range(200))
    _write(tmp_path, "big.py", f'def big():\n    """Compute many values in a row."""\n{lines}')
    (pair,) = load_code_search(root=tmp_path).pairs
    assert MAX_CODE_CHARS - 60 < len(pair.code) <= MAX_CODE_CHARS
    assert pair.code.endswith(")")


def test_build_is_deterministic_across_runs_and_hash_seeds(fake_root: Path) -> None:
    code_search._scan.cache_clear()
    first = load_code_search(root=fake_root, test_fraction=0.4)
    code_search._scan.cache_clear()
    second = load_code_search(root=fake_root, test_fraction=0.4)
    assert first == second
    # a fresh interpreter with another hash seed (the module needs only the standard library)
    script = (
        "import hashlib, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cs', {code_search.__file__!r})\n"
        "cs = importlib.util.module_from_spec(spec); sys.modules['cs'] = cs\n"
        "spec.loader.exec_module(cs)\n"
        f"d = cs.load_code_search(root=cs.Path({str(fake_root)!r}), test_fraction=0.4)\n"
        "print(hashlib.sha256(repr(d.pairs).encode('utf-8')).hexdigest())\n"
    )
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        digests.add(out.stdout.strip())
    assert digests == {_digest(first)}


# --- errors --------------------------------------------------------------------------------------


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"load_code_search: test_fraction must be in \[0, 1\)"):
        load_code_search(test_fraction=1.0)
    with pytest.raises(ValueError, match=r"load_code_search: dev_fraction must be in \[0, 1\)"):
        load_code_search(dev_fraction=-0.1)
    with pytest.raises(TypeError, match="load_code_search: dev_fraction must be a real number"):
        load_code_search(dev_fraction="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dev_fraction \\+ test_fraction must be < 1"):
        load_code_search(dev_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="load_code_search: max_pairs must be >= 1; got 0"):
        load_code_search(max_pairs=0)
    with pytest.raises(TypeError, match="load_code_search: max_pairs must be an int or None"):
        load_code_search(max_pairs=True)
    with pytest.raises(TypeError, match="load_code_search: seed must be an int"):
        load_code_search(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_code_search: root must be a folder"):
        load_code_search(root=tmp_path / "missing")
    with pytest.raises(ValueError, match="load_code_search: no usable"):
        load_code_search(root=tmp_path)
    data = CodeSearchData(pairs=())
    with pytest.raises(ValueError, match=r"CodeSearchData\.split: name must be one of"):
        data.split("validation")
