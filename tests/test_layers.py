"""Architecture rules: the layer contract, no import circles, one owner per heavy dependency, short
compiled signatures, no global random state, no registry hosts in the repo.

The layer contract itself lives in ``pyproject.toml`` (``[tool.importlinter]``) and is checked by
``lint-imports`` (``make lint``, part of ``make test``); :func:`test_the_layer_contract_holds` runs it
here too, so ``pytest`` alone also fails on a broken layer.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "emdsim"
ROOT = SRC.parents[1]
#: the layers, lowest first (the subpackages of emdsim and the foundation modules)
LAYERS = ("rng", "units", "config", "biology", "engine", "cohort", "analysis", "studies", "viz", "cli")


def _module_name(path: Path) -> str:
    parts = ["emdsim", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, text: str | None = None) -> set[str]:
    """Every module ``path`` imports, relative imports resolved (``from ..viz import x`` in
    ``emdsim/cli/main.py`` -> ``emdsim.viz``, ``emdsim.viz.x``), including imports inside functions."""
    package = ["emdsim", *path.relative_to(SRC).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def test_the_layer_contract_holds():
    """import-linter's contracts (pyproject.toml): each layer imports only the layers below it;
    Hydra/OmegaConf only in emdsim.config.load; the simulator imports no plotting, fitting or study code."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter) is a test dependency: pip install -e '.[test]'"
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_module_belongs_to_a_layer():
    """The package is the layers and nothing else: a new module goes into one of them."""
    for name in _modules():
        parts = name.split(".")
        assert len(parts) == 1 or parts[1] in LAYERS, f"{name} is in no layer of {LAYERS}"


def test_the_checker_sees_relative_and_function_local_imports():
    """The AST checker used below: relative imports of the plotting and fitting code inside a
    function, in a module of a subpackage, are resolved to their absolute names."""
    text = "def f():\n    from ..viz.figures import cohort_figures\n    from ..studies import fit\n"
    assert {"emdsim.viz.figures", "emdsim.studies.fit"} <= _imports(SRC / "engine" / "probe.py", text)


def test_no_import_circles_not_even_inside_functions():
    """The module graph of emdsim (every import statement, relative and function-local ones
    included) has no cycle; a module importing its own package (``emdsim.engine.tables`` ->
    ``emdsim.engine``, whose ``__init__`` re-exports it) aside."""
    import networkx as nx

    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(path):
            # the longest known module the import names (``emdsim.viz.figures.cohort_figures`` -> the module)
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph.add_edge(name, target)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles[:5]


def test_one_module_owns_each_heavy_dependency():
    """pyabc lives behind emdsim.studies.fit.abc, scikit-learn behind emdsim.studies.fit.emulate,
    Solara behind emdsim.cli.dashboard; below the CLI, Hydra and OmegaConf only in
    emdsim.config.load (the configuration boundary)."""
    owners = {
        "pyabc": {"studies/fit/abc.py"},
        "sklearn": {"studies/fit/emulate.py"},
        "solara": {"cli/dashboard.py"},
        "hydra": {"config/load.py"},
        "omegaconf": {"config/load.py"},
    }
    for path in SRC.rglob("*.py"):
        name = path.relative_to(SRC).as_posix()
        roots = {m.split(".")[0] for m in _imports(path)}
        for package, allowed in owners.items():
            below_cli = not name.startswith("cli/") or package in ("pyabc", "sklearn", "solara")
            assert package not in roots or name in allowed or not below_cli, f"{name} imports {package}"


def test_no_compiled_function_takes_more_than_eight_parameters():
    """The compiled boundary passes a few typed records (emdsim.engine.kernels: CourseState,
    PatientTables, StepTables, the constant records), not dozens of arrays: every function of the
    compiled modules, numba's and plain ones, takes at most 8 parameters."""
    from numba.core.registry import CPUDispatcher

    from emdsim.engine import jit

    seen = 0
    for source in jit._COMPILED_SOURCES:
        module = importlib.import_module("emdsim." + source.removesuffix(".py").replace("/", "."))
        for attr, value in vars(module).items():
            func = value.py_func if isinstance(value, CPUDispatcher) else value
            if inspect.isfunction(func) and func.__module__ == module.__name__:
                n = len(inspect.signature(func).parameters)
                assert n <= 8, f"{module.__name__}.{attr} takes {n} parameters"
                seen += isinstance(value, CPUDispatcher)
    assert seen >= 10  # the check saw the compiled loops


def test_the_numba_cache_is_keyed_by_every_compiled_source():
    """Every module whose functions numba compiles, and every module they import from emdsim, is in
    the cache key (jit._COMPILED_SOURCES): an edit to any of them can never run stale machine code."""
    from emdsim.engine import jit

    keyed = {"emdsim." + s.removesuffix(".py").replace("/", ".") for s in jit._COMPILED_SOURCES}
    modules = _modules()
    for name in keyed:
        for target in _imports(modules[name]):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("emdsim.") and modules[target].name != "__init__.py":  # packages: no code
                assert target in keyed or target.startswith("emdsim.config"), f"{name} imports {target}, not keyed"


def test_old_module_names_still_import_with_a_deprecation_warning():
    """emdsim <= 0.1 was flat (``emdsim.kernels``, ``emdsim.confload``, ...): each old name gives the
    module at its new home, the same object, and a DeprecationWarning naming the new home."""
    import warnings

    import emdsim

    for old, new in emdsim.MOVED.items():
        sys.modules.pop(old, None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        assert module is importlib.import_module(new), old
        assert module.__spec__.name == new  # the real module keeps its own identity
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught), old
        sys.modules.pop(old, None)


def test_no_global_random_state():
    pattern = re.compile(
        r"np\.random\.(?!default_rng|SeedSequence|Generator)\w+\(|^\s*import random\b|random\.seed\(", re.M
    )
    for path in SRC.rglob("*.py"):
        assert not pattern.search(path.read_text()), path


def test_no_registry_hosts_or_lock_files_in_repo():
    assert not (ROOT / "uv.lock").exists() and not (ROOT / "poetry.lock").exists()


def test_scripts_beside_the_package_use_current_module_paths():
    """benchmarks/ and results/ scripts import modules at their current homes (not the deprecated
    0.1 names) and start commands by modules that exist (``python -m emdsim.cli`` is a package now)."""
    import ast
    import importlib.util

    import emdsim

    for script in [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("results/*.py")]:
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emdsim"):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("emdsim")]
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"emdsim(\.\w+)+", node.value)
            ):
                spec = importlib.util.find_spec(node.value)
                assert spec is not None and spec.submodule_search_locations is None, f"{script.name}: -m {node.value}"
            for name in names:
                assert name not in emdsim.MOVED, f"{script.name} imports the deprecated {name}"
                assert importlib.util.find_spec(name) is not None, f"{script.name} imports {name}"


def test_stale_numba_caches_are_pruned_once_after_an_edit(tmp_path):
    """The caches of earlier sources go when the current one is first made; never the current one,
    and nothing happens while it exists."""
    from emdsim.engine.jit import prune_stale_caches

    old, other, current = tmp_path / "numba-aaa", tmp_path / "numba-bbb", tmp_path / "numba-ccc"
    for d in (old, other):
        (d / "sub").mkdir(parents=True)
    (tmp_path / "keep.txt").write_text("not a cache")
    assert sorted(prune_stale_caches(tmp_path, current)) == [old, other]
    assert not old.exists() and not other.exists() and (tmp_path / "keep.txt").exists()
    current.mkdir()
    old.mkdir()
    assert prune_stale_caches(tmp_path, current) == [] and old.exists()


def test_the_compile_note_looks_for_the_kernels_of_the_engine_that_runs(tmp_path):
    """A cache holding only the hybrid engine's kernels (a machine that has run only the default
    engine) counts as compiled for the hybrid engine, not for the exact one: the 'compiling the
    kernels' note is printed once per engine, not on every run."""
    from emdsim.engine.jit import kernels_cached

    engine_dir = tmp_path / "engine_abc"
    engine_dir.mkdir()
    assert not kernels_cached("hybrid", tmp_path) and not kernels_cached("exact", tmp_path)
    for name in ("hybrid._advance-833.py311.nbi", "kernels._clinic-820.py311.nbi"):
        (engine_dir / name).write_text("")
    assert kernels_cached("hybrid", tmp_path) and not kernels_cached("exact", tmp_path)
    (engine_dir / "kernels._advance-700.py311.nbi").write_text("")
    assert kernels_cached("exact", tmp_path)


def test_the_simulation_path_imports_no_heavy_module():
    """Running a cohort (config, engine, cohort) imports none of lifelines, matplotlib, pyabc,
    Solara, SALib, Dask, scipy.stats or scikit-learn: they load only where analysis, figures, fits,
    the dashboard or designs use them."""
    import subprocess
    import sys

    heavy = ("lifelines", "matplotlib", "pyabc", "solara", "SALib", "dask", "scipy.stats", "sklearn")
    code = (
        "import sys; from emdsim.config.load import load; from emdsim.cohort.run import run_cohort; "
        "run_cohort(load(['cohort.n_patients=2', 'cohort.n_jobs=1', 'sim.followup_years=1'])); "
        f"print([m for m in sys.modules if m.startswith({heavy!r})])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
