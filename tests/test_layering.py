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


# ---------------------------------------------------------------- inside a package (issue 10)

def _module_file(mod: str) -> Path | None:
    base = ROOT.joinpath(*mod.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _local_imports(path: Path) -> set[Path]:
    """Files of this repository that ``path`` imports (relative and absolute imports)."""
    rel = path.relative_to(ROOT).with_suffix("")
    pkg = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            f = _module_file(t) if t else None
            if f is not None and f != path:
                out.add(f)
    return out


@pytest.mark.parametrize("package", ["p2pmoa/protocol", "consensus"])
def test_no_import_circle_between_files_of_a_package(package):
    files = [p for p in sorted((ROOT / package).rglob("*.py"))]
    inside = set(files)
    # a package's __init__ re-exports its files; a file importing a sibling package's
    # __init__ is an import of that package's files, so __init__ edges are followed too
    graph = {f: _local_imports(f) & inside for f in files}
    state: dict[Path, int] = {}
    cycle: list[Path] = []

    def visit(f: Path, stack: list[Path]) -> bool:
        state[f] = 1
        for g in graph[f]:
            if g.name == "__init__.py" and f.is_relative_to(g.parent):
                continue  # a module of a package importing its own package's __init__ is no circle of files
            if state.get(g) == 1:
                cycle.extend(stack[stack.index(g):] + [g] if g in stack else [f, g])
                return True
            if state.get(g) is None and visit(g, stack + [g]):
                return True
        state[f] = 2
        return False

    for f in files:
        if state.get(f) is None and visit(f, [f]):
            break
    assert not cycle, "import circle: " + " -> ".join(str(p.relative_to(ROOT)) for p in cycle)


def test_protocol_files_stay_small_and_events_are_defined_once():
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in sorted((ROOT / "p2pmoa").rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > 700]
    assert not big, "files over 700 lines:\n" + "\n".join(big)
    events = ("UserQuery", "FrameIn", "TimerFired", "GenerateDone", "GenerateFailed",
              "EmbedDone", "EmbedFailed", "PeerUp", "PeerDown", "Started")
    where: dict[str, list[str]] = {}
    effects = {name: "consensus/effects.py" for name in ("Send", "Broadcast", "SetTimer", "CancelTimer")}
    effects.update({name: "p2pmoa/effects.py" for name in (
        "Generate", "Embed", "Deliver", "Accepted", "Refused", "Failed", "Usage", "QueryResult")})
    for path in sorted((ROOT / "p2pmoa").rglob("*.py")) + sorted((ROOT / "consensus").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and (node.name in events or node.name in effects):
                where.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    home = {**{e: "p2pmoa/protocol/events.py" for e in events}, **effects}
    wrong = {k: v for k, v in where.items() if v != [home[k]]}
    assert not wrong, f"defined elsewhere or twice: {wrong}"
    assert set(where) == set(home)
