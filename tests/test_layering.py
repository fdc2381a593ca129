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


# --------------------------------------------------------------------------- one config path

CONFIG_FUNCTION = ("p2pmoa.settings", "protocol_config")
"""The one function that builds the protocol machine's ``ProtocolConfig`` (issue 10)."""


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """Calls of ``name(...)`` or ``something.name(...)`` in ``tree``."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            if (isinstance(f, ast.Name) and f.id == name) or (isinstance(f, ast.Attribute) and f.attr == name):
                out.append(n)
    return out


def _imports_name(tree: ast.AST, module: str, name: str) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == module and any(a.name == name for a in n.names)
               for n in ast.walk(tree))


@pytest.mark.parametrize("path", ["node/daemon.py", "simulations/mesh.py"])
def test_daemon_and_sim_mesh_build_their_config_through_the_one_function(path):
    module, fn = CONFIG_FUNCTION
    tree = ast.parse((ROOT / path).read_text(), path)
    assert _imports_name(tree, module, fn), f"{path} does not import {fn} from {module}"
    assert _calls(tree, fn), f"{path} never calls {fn}(...)"
    assert (ROOT / (module.replace(".", "/") + ".py")).exists()


def test_protocol_config_is_constructed_only_by_the_one_function():
    files = sorted((ROOT / "node").rglob("*.py")) + [ROOT / "simulations" / "mesh.py"]
    bad = [f"{p.relative_to(ROOT)}:{c.lineno}" for p in files
           for c in _calls(ast.parse(p.read_text(), str(p)), "ProtocolConfig")]
    assert not bad, "ProtocolConfig(...) built outside p2pmoa/settings.py:\n" + "\n".join(bad)
    settings = ast.parse((ROOT / "p2pmoa" / "settings.py").read_text())
    assert _calls(settings, "ProtocolConfig"), "p2pmoa/settings.py no longer builds ProtocolConfig"


# --------------------------------------------------------------------------- one vocabulary

EVENT_AND_EFFECT_NAMES = (
    "Send", "Broadcast", "SetTimer", "CancelTimer", "Generate", "Embed", "Deliver", "Accepted",
    "Refused", "Failed", "UserQuery", "FrameIn", "TimerFired", "GenerateDone", "GenerateFailed",
    "EmbedDone", "EmbedFailed", "PeerUp", "PeerDown", "Started", "Received")

KNOWN_DUPLICATES: set[tuple[str, str]] = set()
"""(file, class) pairs allowed to define a name twice: none."""


def test_each_event_and_effect_type_is_defined_once():
    where: dict[str, list[str]] = {n: [] for n in EVENT_AND_EFFECT_NAMES}
    for package in ("consensus", "p2pmoa", "simulations", "node"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for n in ast.parse(path.read_text(), rel).body:
                if isinstance(n, ast.ClassDef) and n.name in where and (rel, n.name) not in KNOWN_DUPLICATES:
                    where[n.name].append(f"{rel}:{n.lineno}")
    twice = {n: w for n, w in where.items() if len(w) > 1}
    assert not twice, f"event/effect types defined more than once: {twice}"
    stale = [d for d in KNOWN_DUPLICATES if not (ROOT / d[0]).exists() or
             not any(isinstance(n, ast.ClassDef) and n.name == d[1]
                     for n in ast.parse((ROOT / d[0]).read_text()).body)]
    assert not stale, f"allow-listed duplicates that no longer exist (remove them): {stale}"


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
    big = [f"{p.relative_to(ROOT)}: {n} lines" for pkg in ("p2pmoa", "consensus", "node")
           for p in sorted((ROOT / pkg).rglob("*.py")) if (n := len(p.read_text().splitlines())) > 700]
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
