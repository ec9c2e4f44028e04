"""The structure holds: arrows point one way, the core imports light, all imports are declared.

- Library packages (every module outside ``posneg.bench`` and ``posneg.cli``) never import the top
  layer (``posneg.bench``, ``posneg.cli``) or the terminal and plotting libraries (typer, rich,
  matplotlib), not even lazily inside a function: checked on the source (AST) of every module.
- ``import posneg.losses, posneg.mixing, posneg.oversampling`` (and the other core families) loads
  none of transformers, sentence_transformers, typer, rich, matplotlib: checked in a fresh process.
- Every third-party module imported anywhere in ``src/posneg`` belongs to a distribution named in
  ``pyproject.toml``'s dependencies or extras.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "posneg"

TOP_LAYER = ("posneg.bench", "posneg.cli")
FORBIDDEN_IN_LIBRARY = (*TOP_LAYER, "typer", "rich", "matplotlib")
HEAVY = ("transformers", "sentence_transformers", "typer", "rich", "matplotlib")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str | None = None) -> list[tuple[int, str]]:
    """Every absolute module a file imports (top level, inside functions, through importlib).

    ``name`` is the file's dotted module name (default: from its place under ``src/``), used to
    resolve relative imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = (name or _module_name(path)).split(".")
                if path.name != "__init__.py":
                    base.pop()
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def _library_files() -> list[Path]:
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if not any(name == top or name.startswith(top + ".") for top in TOP_LAYER):
            files.append(path)
    return files


def _is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "posneg" / "losses"
    pkg.mkdir(parents=True)
    probe = pkg / "probe.py"
    probe.write_text(
        "import rich.console\n"
        "from posneg.bench import _terminal\n"
        "def f():\n"
        "    import typer\n"
        "    importlib.import_module('matplotlib.pyplot')\n"
        "from ..cli import main\n"
    )
    found = [m for _, m in _imports(probe, "posneg.losses.probe")]
    for module in ("rich.console", "posneg.bench", "typer", "matplotlib.pyplot", "posneg.cli"):
        assert any(_is_under(m, module) for m in found), (module, found)


def test_library_packages_never_import_the_top_layer() -> None:
    files = _library_files()
    assert len(files) > 40, "the walk found too few library modules"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in _imports(path)
        if any(_is_under(module, bad) for bad in FORBIDDEN_IN_LIBRARY)
    ]
    assert not wrong, "wrong-way arrows:\n" + "\n".join(wrong)


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"{statement}\n"
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_core_families_import_light() -> None:
    loaded = _loaded_after(
        "import posneg, posneg.losses, posneg.mixing, posneg.oversampling, posneg.negatives, "
        "posneg.augment, posneg.registry, posneg.distributed\n"
        "from posneg.losses import DCLLoss"
    )
    assert loaded == [], f"importing the core families loaded {loaded}"


def test_mining_and_data_load_no_terminal_or_model_library() -> None:
    loaded = _loaded_after("import posneg.mining, posneg.mining.strategies, posneg.data")
    assert loaded == [], f"importing posneg.mining / posneg.data loaded {loaded}"


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra, extra_specs in project.get("optional-dependencies", {}).items():
        if extra != "dev":  # what the library imports must install for users, not only for tests
            specs += extra_specs
    names = set()
    for spec in specs:
        match = re.match(r"[A-Za-z0-9._-]+", spec)
        assert match, spec
        names.add(re.sub(r"[-_.]+", "-", match.group(0)).lower())
    return names


def _distributions_shipping(top: str) -> list[str]:
    """Distributions whose files include the package ``top`` (Python 3.10's
    ``packages_distributions`` reads only ``top_level.txt``, which some wheels lack)."""
    found = []
    for dist in importlib.metadata.distributions():
        files = dist.files or []
        if any(f.parts and f.parts[0] in (top, f"{top}.py") for f in files):
            found.append(dist.metadata["Name"])
    return found


def test_every_imported_package_is_declared() -> None:
    stdlib = set(sys.stdlib_module_names)
    owners = importlib.metadata.packages_distributions()
    declared = _declared()
    undeclared = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if not top or top in stdlib or top == "posneg" or top == "__future__":
                continue
            dists = owners.get(top) or _distributions_shipping(top)
            if not dists:
                pytest.fail(f"{path.relative_to(ROOT)}:{line}: {top} is not installed here")
            names = {re.sub(r"[-_.]+", "-", d).lower() for d in dists}
            if not names & declared:
                undeclared[top] = f"{path.relative_to(ROOT)}:{line} ({', '.join(sorted(names))})"
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_command_without_the_cli_extra_says_what_to_install() -> None:
    code = "import sys\nsys.modules['typer'] = None\nimport posneg.cli\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "needs typer, from the [cli] extra: pip install 'posneg[cli]'" in done.stderr
    assert "Traceback" not in done.stderr


#: Library functions allowed more than 12 parameters, and why. Everything else stays at 12 or
#: fewer (options travel as one frozen, validated object, e.g. ``posneg.mining.MineConfig``).
WIDE_ON_PURPOSE = {
    # the documented keyword set of mine(), the same knobs as sentence-transformers'
    # mine_hard_negatives; its body is split into validate, filter and sample stages
    "posneg.mining.mine.mine",
    # one keyword per hyperparameter of the paper (AMCL's heads and temperature bounds, the
    # feature-transformation paper's mixing and extrapolation ranges, the random field's
    # strengths and smoothness per transform)
    "posneg.losses.amcl.AMCLLoss.__init__",
    "posneg.negatives.feature_transform.feature_transform",
    "posneg.augment.random_field.sample_random_field_params",
}


def _wide_functions() -> dict[str, int]:
    wide = {}
    for path in _library_files():
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scopes: list[tuple[str, ast.AST]] = [(module, tree)]
        while scopes:
            prefix, scope = scopes.pop()
            for node in ast.iter_child_nodes(scope):
                if isinstance(node, ast.ClassDef):
                    scopes.append((f"{prefix}.{node.name}", node))
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a = node.args
                    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
                    count = len([n for n in names if n not in ("self", "cls")])
                    if count > 12:
                        wide[f"{prefix}.{node.name}"] = count
    return wide


def test_library_functions_take_at_most_12_parameters_or_say_why() -> None:
    wide = _wide_functions()
    unexplained = {name: n for name, n in wide.items() if name not in WIDE_ON_PURPOSE}
    assert not unexplained, f"library functions over 12 parameters: {unexplained}"
    stale = WIDE_ON_PURPOSE - set(wide)
    assert not stale, f"no longer wide, drop from WIDE_ON_PURPOSE: {stale}"


def test_every_bench_file_keeps_to_its_recipe_size() -> None:
    """A family's bench is only its recipe: no file in ``posneg.bench`` over 500 lines."""
    sizes = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted((PACKAGE / "bench").glob("*.py"))
    }
    assert {"contrastive.py", "mixing.py", "imbalance.py", "retrieval.py"} <= set(sizes)
    assert not {name: n for name, n in sizes.items() if n > 500}


def test_test_file_names_are_unique() -> None:
    """Test folders have no ``__init__.py``, so pytest imports each file by its base name: two
    files named alike (``tests/a/test_metrics.py``, ``tests/b/test_metrics.py``) cannot both be
    collected in one run ("import file mismatch")."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted(tests.rglob("*.py")):
        if path.name == "conftest.py" or "__pycache__" in path.parts:
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(tests)} and {path.relative_to(tests)}")
        seen.setdefault(path.name, path)
    assert not clashes, f"test files share a base name: {clashes}"
