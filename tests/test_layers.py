"""sgglib's layers import one way, and each module says what it needs at its top.

Layers, lowest first; a module may import from its own layer and the ones below, never above. Every import is
walked, function-local ones included, so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sgglib"

LAYERS = [
    ("core", {"sgglib", "sgglib.graph", "sgglib.boxes", "sgglib.parse", "sgglib.similarity", "sgglib.matching",
              "sgglib.prompts", "sgglib.config", "sgglib.runs"}),
    ("scoring", {"sgglib.rewards", "sgglib.metrics", "sgglib.evaluate"}),
    ("data", {"sgglib.data"}),
    # drawing and reading runs: may see the data (ground truth) but never a model
    ("views", {"sgglib.viz", "sgglib.viewer", "sgglib.analysis", "sgglib.diagnostics"}),
    ("models", {"sgglib.models"}),
    ("train", {"sgglib.train"}),
    ("embedded", {"sgglib.embedded"}),
    ("top", {"sgglib.pipeline", "sgglib.ablation"}),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for rank, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or (member != "sgglib" and module.startswith(member + ".")):
                return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def imports(path: Path, source: str | None = None) -> list[tuple[str, int, bool]]:
    """``(imported sgglib module, line, inside a function)`` for every import of ``path`` (or of ``source`` as if it
    were that file)."""
    tree = ast.parse(path.read_text() if source is None else source)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            target, names = "", [a.name for a in node.names]
        else:
            continue
        # ``from . import data`` names a module; ``from .graph import SceneGraph`` a class in one
        found = {_existing_module(name) for name in ([target, *names] if target else names)}
        out += [(m, node.lineno, id(node) in local) for m in sorted(found) if m.split(".")[0] == "sgglib"]
    return out


def _existing_module(name: str) -> str:
    parts = name.split(".")
    while parts:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts = parts[:-1]
    return name


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path):
    me = module_name(path)
    mine = layer_of(me)
    upward = [f"line {line}: {target} ({LAYERS[layer_of(target)][0]})" for target, line, _ in imports(path)
              if layer_of(target) > mine]
    assert not upward, f"{me} ({LAYERS[mine][0]}) imports from a higher layer: {upward}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_imports_sit_at_the_top_of_the_file(path):
    # only heavy third-party imports (torch, transformers, datasets, ...) may wait inside a function
    lazy = [f"line {line}: {target}" for target, line, inside in imports(path) if inside]
    assert not lazy, f"{module_name(path)} imports sgglib modules inside functions: {lazy}"


def test_every_module_has_a_layer_and_none_is_too_long():
    for path in FILES:
        layer_of(module_name(path))
    # one concept per module, readable in one sitting
    long = {str(p.relative_to(PACKAGE)): n for p in FILES if (n := len(p.read_text().splitlines())) > 460}
    assert not long, long


def test_the_walker_sees_function_local_and_relative_imports():
    # the checker itself, on source written as if it were sgglib/models.py: a relative import of a higher layer
    # inside a function is found, resolved, and marked function-local; a top-level one is not
    source = "from .metrics import compute_metrics\n\n\ndef f():\n    from .train import sft\n"
    found = imports(PACKAGE / "models.py", source)
    assert ("sgglib.metrics", 1, False) in found and ("sgglib.train.sft", 5, True) in found
    assert layer_of("sgglib.train.sft") > layer_of("sgglib.models") > layer_of("sgglib.data")
