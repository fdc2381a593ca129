"""The shape of consensus/pbft/: no import circle between its files, no file over 700 lines,
and the names the rest of the repository uses still importable from ``consensus.pbft``."""
from __future__ import annotations

import ast
from pathlib import Path

import consensus
from consensus import pbft

PKG = Path(pbft.__file__).resolve().parent


def _intra_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (relative ``from .x import`` or
    ``from . import x``, and absolute ``consensus.pbft.x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    out.add(node.module.split(".")[0])
                else:
                    out.update(a.name for a in node.names)
            elif node.level == 0 and (node.module or "").startswith("consensus.pbft."):
                out.add(node.module.split(".")[2])
    return out


def _graph() -> dict[str, set[str]]:
    mods = {p.stem: p for p in PKG.glob("*.py") if p.stem != "__init__"}
    return {m: _intra_imports(p) & set(mods) for m, p in mods.items()}


def test_the_package_has_the_documented_rooms():
    assert set(_graph()) == {"messages", "codec", "group", "config", "certs", "log", "views",
                           "catchup", "replica"}
    assert not (PKG.parent / "pbft.py").exists()


def test_no_import_circle_between_files_of_the_package():
    graph = _graph()
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, "import circle: " + " -> ".join(path + (m,))
        if m in done:
            return
        for n in sorted(graph[m]):
            visit(n, path + (m,))
        done.add(m)

    for m in sorted(graph):
        visit(m, ())
    # the order the package docstring promises: each file imports only earlier ones
    order = ["messages", "codec", "group", "config", "certs", "log", "views", "catchup",
             "replica"]
    for m, deps in graph.items():
        assert all(order.index(d) < order.index(m) for d in deps), (m, deps)


def test_no_file_of_the_package_over_700_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PKG.glob("*.py")}
    assert max(sizes.values()) <= 700, sizes


def test_names_used_across_the_repository_still_import_from_consensus_pbft():
    used = ["Broadcast", "CancelTimer", "Checkpoint", "Commit", "CommitProof", "Decided",
            "EquivocationDetected", "MalformedMessage", "MemberId", "NewView",
            "PbftConfigError", "PbftError", "PreparedCert", "PrePrepare", "Prepare", "Receive",
            "Replica", "ReplicaStatistics", "Request", "Send", "SetTimer",
            "StateTransferNeeded", "TimerExpired", "ViewChange", "NULL_DIGEST", "NULL_VALUE",
            "decode", "digest_of", "encode", "primary_order", "signing_bytes",
            "with_signature"]
    missing = [n for n in used if not hasattr(pbft, n)]
    assert not missing
    # consensus/__init__ re-exports the same objects (one definition each)
    assert consensus.Replica is pbft.Replica is pbft.replica.Replica
    assert consensus.Send is pbft.Send
    from consensus.effects import Send
    assert pbft.Send is Send
