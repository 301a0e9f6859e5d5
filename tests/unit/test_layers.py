"""The packages of `connector/` import one way: each only from those before it in LAYERS.

A lookup and an event then travel down through the packages without coming back, and the
emulator stays out of the product (only three commands may import it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "connector"
# Lower layers first; a package may import from its own layer only within itself.
LAYERS: list[set[str]] = [
    {"errors", "logs", "timestamps", "metrics", "tls"},
    {"config"},
    {"state"},
    {"segment"},
    {"cards"},
    {"writeback", "auth"},
    {"checks"},
    {"web"},
    {"app"},
    {"serving"},
    {"cli"},
]
LAYER_OF = {package: index for index, layer in enumerate(LAYERS) for package in layer}
# The commands that run the emulator, and nothing else, may import it.
SANDBOX_USERS = {"connector/cli/sandbox.py", "connector/cli/demo.py", "connector/cli/data.py"}


def product_modules() -> list[Path]:
    return sorted(
        p
        for p in ROOT.rglob("*.py")
        if "sandbox" not in p.relative_to(ROOT).parts and p.name != "__main__.py"
    )


def package_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def imported(path: Path) -> set[str]:
    """The `connector.*` modules a file imports, at any depth (lazy imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("connector"):
            names = [node.module] if node.module != "connector" else []
            names += [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(n for n in names if n.count(".") >= 1)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("connector."))
    return found


def test_every_package_has_a_layer() -> None:
    packages = {package_of(p) for p in product_modules()} - {"__init__"}
    assert packages <= set(LAYER_OF), packages - set(LAYER_OF)


@pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down(path: Path) -> None:
    package = package_of(path)
    if package == "__init__":
        return
    for module in imported(path):
        target = module.split(".")[1]
        relative = str(path.relative_to(ROOT.parent))
        if target == "sandbox":
            assert relative in SANDBOX_USERS, f"{relative} imports the emulator ({module})"
            continue
        if target not in LAYER_OF or target == package:
            continue  # a module of connector/ itself (connector.__init__) or its own package
        assert LAYER_OF[target] < LAYER_OF[package], (
            f"{relative} imports {module}: {package} may only import from packages below it"
        )
