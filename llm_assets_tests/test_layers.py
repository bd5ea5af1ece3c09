"""The house's two layers: the stage modules never reach the Dagster layer, not even on paper."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import llm_assets

PACKAGE = Path(llm_assets.__file__).parent
STAGE_MODULES = sorted(
    [*PACKAGE.glob("books/*.py"), *PACKAGE.glob("text/*.py"), *PACKAGE.glob("training/*.py"),
     *(PACKAGE / name for name in ("atomic.py", "digests.py", "locks.py", "settings.py", "stamps.py"))]
)
# dagster_pipes is allowed: the protocol package external processes (the torchrun worker) use to
# report to the orchestrator; it has no dependency on dagster itself.
DAGSTER_SIDE = ("dagster.", "llm_assets.orchestration", "llm_assets.definitions")


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_stage_modules_import_nothing_from_the_dagster_layer_or_the_package_root() -> None:
    for path in STAGE_MODULES:
        for name in imported_names(path):
            assert name != "dagster" and not name.startswith(DAGSTER_SIDE), f"{path.relative_to(PACKAGE)} imports {name}"
            assert name != "llm_assets", f"{path.relative_to(PACKAGE)} imports the package root (which holds defs)"


def test_importing_every_stage_module_loads_no_dagster() -> None:
    modules = [".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts) for p in STAGE_MODULES]
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('dagster' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_no_module_is_a_room_nobody_can_keep_in_their_head() -> None:
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 420, f"{path.relative_to(PACKAGE)} has {lines} lines: split it by job"


def test_loading_the_definitions_imports_no_pytorch() -> None:
    """The UI, the CLI and every data step load the code location; only the training step needs
    PyTorch and transformers (seconds of import each time otherwise)."""
    code = "import sys, llm_assets.definitions\nprint(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
