"""DESIGN.md section 2's dependency rules, read off every module's imports (top level and
inside functions): the API never imports the workers, the shared packages import neither, and
the NumPy core only NumPy, the standard library and its optional dataset readers."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Imported lazily by the one reader that needs each (models/datasets/).
OPTIONAL_READERS = {"PIL", "h5py", "sklearn", "skimage"}
FORBIDDEN = {
    "service": {"workers"},
    "store": {"service", "workers"},
    "contract": {"service", "workers"},
    "broker": {"service", "workers"},
    # MLflow's server process imports it: MLflow and SQLAlchemy only, none of gradq.
    "mlflow_server": {"service", "workers", "store", "contract", "broker", "models"},
}


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_shared_package_and_the_api_never_import_what_they_must_not(package):
    offending = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package])
        for path in modules_of(package)
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_numpy_core_imports_numpy_the_standard_library_and_its_readers_only():
    allowed = {"numpy", "models", *OPTIONAL_READERS, *sys.stdlib_module_names}
    offending = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) - allowed)
        for path in modules_of("models")
    }
    assert {path: names for path, names in offending.items() if names} == {}
    assert len(modules_of("models")) > 10  # the walk found the core
