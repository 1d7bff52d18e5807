"""The layering, enforced on every module (recursively), statically and at run time.

engine/ is stacked: core < data < train < results < experiments < cli. A module may import its
own layer and the ones below, never one above; engine never imports Qt or the GUI; the GUI never
imports the command line. Every import of our own code goes through the one name `balancelab`.
"""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QT_MODULES = {"PySide6", "PyQt5", "PyQt6", "PySide2", "shiboken6", "superqt", "qtpy", "pyqtgraph"}
ENGINE_LAYERS = ["core", "data", "train", "results", "experiments", "cli"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["balancelab", *parts])


def imported_modules(source: str, module: str, is_package: bool = False) -> list[str]:
    """Absolute names of everything ``source`` imports, anywhere in the file (lazy imports too)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
                names += [prefix] if node.module else [f"{prefix}.{a.name}" for a in node.names]
            else:
                names.append(node.module or "")
    return names


def layer_of(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if parts[:2] == ["balancelab", "engine"] and len(parts) > 2 and parts[2] in ENGINE_LAYERS:
        return "engine", ENGINE_LAYERS.index(parts[2])
    if parts[:2] == ["balancelab", "gui"]:
        return "gui", len(ENGINE_LAYERS)
    return None


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """Every import in ``source`` (the code of ``module``) that breaks the layering."""
    found = []
    here = layer_of(module)
    for target in imported_modules(source, module, is_package):
        top = target.split(".")[0]
        if top in ("engine", "gui"):
            found.append(f"{module} imports {target}: use the one import name balancelab.{target}")
            continue
        if module.startswith("balancelab.engine"):
            if top in QT_MODULES or target.startswith("balancelab.gui"):
                found.append(f"{module} imports {target}: the engine never imports Qt or the GUI")
                continue
        if module.startswith("balancelab.gui") and target.startswith("balancelab.engine.cli"):
            found.append(f"{module} imports {target}: the GUI never imports the command line")
            continue
        there = layer_of(target)
        if here and there and here[0] == "engine" and there[0] == "engine" and there[1] > here[1]:
            found.append(f"{module} ({ENGINE_LAYERS[here[1]]}) imports {target} ({ENGINE_LAYERS[there[1]]}), a higher layer")
    return found


def source_files():
    for folder in ("engine", "gui"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_every_module_respects_the_layers():
    problems = []
    for path in source_files():
        problems += violations(module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


def test_every_engine_module_sits_in_a_layer():
    loose = [p.name for p in (ROOT / "engine").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside a layer folder: {loose}"
    unknown = [p.name for p in (ROOT / "engine").iterdir() if p.is_dir() and p.name not in ENGINE_LAYERS
               and not p.name.startswith((".", "__"))]
    assert not unknown, f"folders that are not a known layer: {unknown}"


def test_the_checker_catches_planted_violations():
    """A check that cannot fail proves nothing: plant each kind of bad import and expect it reported."""
    planted = {
        ("balancelab.engine.data.scanner", "from balancelab.engine.train.run import train\n"): "higher layer",
        ("balancelab.engine.data.scanner", "def f():\n    from ..results import export\n"): "higher layer",
        ("balancelab.engine.train.loop", "import balancelab.engine.experiments.compare\n"): "higher layer",
        ("balancelab.engine.results.export", "from balancelab.engine.cli.common import CliError\n"): "higher layer",
        ("balancelab.engine.core.events", "from PySide6.QtCore import QObject\n"): "never imports Qt",
        ("balancelab.engine.train.run", "from balancelab.gui.worker import GeneratorThread\n"): "never imports Qt",
        ("balancelab.gui.views.train", "from balancelab.engine.cli.main import main\n"): "command line",
        ("balancelab.gui.views.train", "from engine.train.run import train\n"): "one import name",
    }
    for (module, source), expected in planted.items():
        found = violations(module, source)
        assert found and expected in found[0], (module, source, found)
    assert violations("balancelab.engine.train.run", "from balancelab.engine.data.scanner import scan\n") == []
    assert violations("balancelab.gui.views.train", "from balancelab.engine.train.run import train\n") == []


def test_importing_every_engine_module_loads_no_qt():
    modules = [module_name(p) for p in (ROOT / "engine").rglob("*.py")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6','PyQt5','PyQt6','shiboken6','pyqtgraph')"
        " or m.startswith('balancelab.gui')]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_installed_package_exposes_one_import_name():
    """Outside the checkout, `balancelab` imports and the generic names `engine` / `gui` do not."""
    code = ("import importlib.util, balancelab.engine.core.events, balancelab.gui\n"
            "assert importlib.util.find_spec('engine') is None and importlib.util.find_spec('gui') is None\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
