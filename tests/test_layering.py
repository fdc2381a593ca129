"""The import direction of docs/architecture.md, checked on every file.

consensus <- p2pmoa <- {node, simulations}; node and simulations never import each
other; the pure core (consensus, p2pmoa) never imports trio, libp2p or llama_cpp at
module level and never reads the wall clock or the global random generator.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "consensus": {"p2pmoa", "node", "simulations", "trio", "libp2p", "llama_cpp"},
    "p2pmoa": {"node", "simulations", "trio", "libp2p"},
    "node": {"simulations"},
    "simulations": {"node", "libp2p", "trio"},
}
# llama_cpp is allowed in p2pmoa only inside functions (lazy), in the backend modules.
LAZY_ONLY = {"p2pmoa": {"llama_cpp"}}


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node, a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module.split(".")[0]


def _module_level(tree: ast.Module):
    """Import nodes not nested in a function body."""
    out = set()
    def visit(n, in_func):
        for child in ast.iter_child_nodes(n):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)) and not f:
                out.add(id(child))
            visit(child, f)
    visit(tree, False)
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package}/ has no modules"
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        top = _module_level(tree)
        for node, name in _imports(tree):
            if name in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
            if name in LAZY_ONLY.get(package, ()) and id(node) in top:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name} at module level")
    assert not bad, "layering violated:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ["consensus", "p2pmoa"])
def test_core_reads_no_clock_or_global_random(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        src = path.read_text()
        for needle in ("time.time(", "time.monotonic(", "datetime.now(", "random.random(",
                       "random.choice(", "random.shuffle(", "random.randint(", "np.random.rand("):
            for lineno, line in enumerate(src.splitlines(), 1):
                if needle in line and "# clock-ok" not in line:
                    bad.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not bad, "the pure core must take time and randomness as inputs:\n" + "\n".join(bad)
