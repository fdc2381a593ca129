"""`p2pmoa node run | keygen | peers | status | demo`: the node's subcommands.

Registered through the ``p2pmoa.commands`` entry points (see p2pmoa/cli.py); each
``register_*(subparsers)`` adds one sub-parser whose ``func(args) -> int`` runs it.
Flags are turned into one frozen :class:`node.config.NodeConfig` here, at the edge.
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from node.config import (CONSENSUS_METHODS, DEFAULT_API, FAULTS, ConfigError, NodeConfig,
                         load_config)


def _add_node_flags(p: argparse.ArgumentParser) -> None:
    d = NodeConfig()
    p.add_argument("--config", metavar="FILE", help="TOML file with the same keys as these flags; flags override it")
    p.add_argument("--listen", action="append", metavar="MULTIADDR",
                   help=f"libp2p address to listen on, repeatable (default {d.listen[0]}; use /tcp/0 for any free port)")
    p.add_argument("--bootstrap", action="append", metavar="MULTIADDR",
                   help="bootstrap peer /ip4/HOST/tcp/PORT/p2p/PEER_ID, repeatable; unreachable ones are retried with backoff")
    p.add_argument("--model", metavar="NAME|PATH",
                   help=f"local model: smollm2-135m, gemma3-270m, a .gguf path, or 'stand-in' (deterministic fake, for tests) (default {d.model})")
    p.add_argument("--embedder", metavar="NAME|PATH",
                   help="mesh-wide embedding model (name, GGUF path, or 'hashing' for the stand-in); every node of a mesh must use the same. "
                        "Default: gemma3-270m (centred; chosen by measurement, docs/embeddings.md), or hashing with a stand-in model")
    p.add_argument("--role", metavar="TEXT", help=f"role this node answers in (default {d.role!r})")
    p.add_argument("--consensus", choices=CONSENSUS_METHODS,
                   help=f"how queries asked at this node are decided (default {d.consensus})")
    p.add_argument("--data-dir", metavar="DIR", help=f"identity key, prompt buffer, trust (default {d.data_dir})")
    p.add_argument("--api", metavar="HOST:PORT", help=f"local HTTP API address (default {d.api})")
    p.add_argument("--fault", choices=FAULTS,
                   help="FAULT INJECTION for tests/demos: silent (never answers), garbage (malformed answers), equivocate (conflicting votes). Off by default")
    p.add_argument("--deadline-s", type=float, help=f"seconds to wait for proposals before deciding (default {d.deadline_s})")
    p.add_argument("--round-timeout-s", type=float, help=f"seconds the aggregation round may take before the originator decides alone (default {d.round_timeout_s})")
    p.add_argument("--proposers-max", type=int, help=f"cap on the proposals one question collects, own included; by default all live peers are asked and the round starts when they have answered (default cap {d.proposers_max})")
    p.add_argument("--proposers-oversample", type=float, help=f"in a mesh larger than 1 + cap x this, about cap x this peers are asked to answer each question (default {d.proposers_oversample})")
    p.add_argument("--stand-in-delay-s", type=float, help="with --model stand-in only: simulated seconds per generation (load tests)")
    p.add_argument("--admission-window-s", type=float, help=f"seconds over which the admitted arrival rate is measured (default {d.admission_window_s})")
    p.add_argument("--alpha-window-s", type=float, help=f"generation times older than this no longer count in the service time (default {d.alpha_window_s})")
    p.add_argument("--admission-slack", type=float, help=f"share (0-1] of the queue-stability bound a busy node admits up to; an idle node always admits (default {d.admission_slack})")
    p.add_argument("--buffer-max", type=int, help=f"prompt buffer capacity, queries (default {d.buffer_max})")
    p.add_argument("--max-tokens", type=int, help=f"default answer length, tokens (default {d.max_tokens})")
    p.add_argument("--connections-target", type=int, help=f"peers to keep connected (default {d.connections_target})")
    p.add_argument("--threads", type=int, help=f"llama.cpp threads (default {d.threads})")
    p.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                   help="log lines as text (default) or one JSON object per line (same as `p2pmoa --log-format`)")
    p.add_argument("--network-key", metavar="FILE",
                   help="private mesh: only hosts holding this pre-shared key can connect (libp2p pnet); create one with `p2pmoa keygen --network-key FILE`")
    p.add_argument("--mdns", action=argparse.BooleanOptionalAction, default=None,
                   help="find peers on the LAN by mDNS (default: on with --network-key, off in an open mesh)")
    p.add_argument("--relay", action=argparse.BooleanOptionalAction, default=None,
                   help="serve as a circuit-relay v2 relay for peers behind NAT (run it on a reachable node)")
    p.add_argument("--clock-offset-s", type=float,
                   help="FAULT INJECTION for tests: shift this node's protocol clock by this many seconds")
    p.add_argument("--roster", metavar="FILE",
                   help="signed roster of a private mesh (p2pmoa roster sign): only its peers get seats and work")
    p.add_argument("--memory", choices=("on", "off"),
                   help=f"collaborative memory (default {d.memory}; memory_* keys in the TOML tune it, docs/memory.md)")
    p.add_argument("--rate-candidates", action=argparse.BooleanOptionalAction, default=None,
                   help="rate each round's candidate answers with this node's own model and break ties between "
                        "equally supported answers by it (default on; off: embedding centrality breaks them)")


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    overrides = {k: getattr(args, k, None) for k in (
        "listen", "bootstrap", "model", "embedder", "role", "consensus", "data_dir", "api", "fault",
        "deadline_s", "round_timeout_s", "proposers_max", "proposers_oversample", "stand_in_delay_s", "buffer_max",
        "max_tokens", "connections_target", "threads", "network_key", "mdns", "relay",
        "clock_offset_s", "roster", "memory", "rate_candidates",
        "admission_window_s", "alpha_window_s", "admission_slack")}
    return load_config(args.config, overrides)


def _run_node(args: argparse.Namespace) -> int:
    from node.preflight import StartupError, check_node
    try:
        cfg = config_from_args(args)
        check_node(cfg)
    except (ConfigError, StartupError) as exc:
        print(f"p2pmoa node run: {exc}", file=sys.stderr)
        return 2
    if cfg.network_key:
        from node.host import NetworkKeyError, read_network_key
        try:
            read_network_key(cfg.network_key)
        except NetworkKeyError as exc:
            print(f"p2pmoa node run: {exc}", file=sys.stderr)
            return 2
    from node.daemon import run_daemon
    return run_daemon(cfg)


def register_node(sub) -> None:
    p = sub.add_parser("node", help="run a mesh node (libp2p + local model + HTTP API)")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    run = nsub.add_parser("run", help="run the node daemon in the foreground (SIGINT/SIGTERM stop it cleanly)")
    _add_node_flags(run)
    run.set_defaults(func=_run_node)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _keygen_network(args: argparse.Namespace, data_dir: Path) -> int:
    from node.host import write_network_key
    path = Path(args.network_key if args.network_key is not True else data_dir / "network.key")
    try:
        fp = write_network_key(path, force=args.force)
    except FileExistsError as exc:
        print(f"p2pmoa keygen: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"p2pmoa keygen: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote network key {path} (mode 0600, fingerprint {fp}); copy it to every device "
          f"of the mesh and start each with --network-key {path}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from node.preflight import StartupError, check_data_dir
    from node.transport import load_or_create_identity, peer_id_of
    data_dir = Path(args.data_dir or NodeConfig().data_dir).expanduser()
    if args.network_key:
        return _keygen_network(args, data_dir)
    try:
        check_data_dir(data_dir)
    except StartupError as exc:
        print(f"p2pmoa keygen: {exc}", file=sys.stderr)
        return 2
    path = data_dir / "identity.key"
    if path.exists() and not args.force:
        print(f"{path} exists (peer id {peer_id_of(load_or_create_identity(str(path)))}); "
              "use --force to replace it", file=sys.stderr)
        return 1
    if path.exists():
        path.unlink()
    kp = load_or_create_identity(str(path))
    print(peer_id_of(kp))
    return 0


def register_keygen(sub) -> None:
    p = sub.add_parser("keygen", help="create the node's Ed25519 identity key (0600) in the data dir")
    p.add_argument("--data-dir", metavar="DIR", help=f"default {NodeConfig().data_dir}")
    p.add_argument("--force", action="store_true", help="replace an existing key (the peer id changes)")
    p.add_argument("--network-key", nargs="?", const=True, default=None, metavar="FILE",
                   help="instead: write a private-mesh pre-shared key (0600) to FILE "
                        "(default DATA_DIR/network.key); share it with the mesh's devices only")
    p.set_defaults(func=_keygen)


def api_get(api: str, path: str, timeout_s: float = 5.0) -> dict:
    """GET ``http://API/path`` as JSON. Raises OSError when the node is not reachable."""
    with urllib.request.urlopen(f"http://{api}{path}", timeout=timeout_s) as r:
        return json.loads(r.read())


def _get_cmd(path: str):
    def run(args: argparse.Namespace) -> int:
        try:
            data = api_get(args.api, path)
        except (OSError, urllib.error.URLError) as exc:
            print(f"no node answering at http://{args.api} ({exc}); is `p2pmoa node run` running?",
                  file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(data, indent=2))
        elif path == "/peers":
            print(format_peers(data.get("peers", [])))
        else:
            for k, v in data.items():
                print(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
        return 0
    return run


def _model_columns(peer: dict) -> str:
    """A peer's model and embedding space: the GGUF metadata it advertises by gossip
    (node/nodeinfo.py) when it has arrived, else what its connect-time greeting said."""
    from node.nodeinfo import describe_model
    text = describe_model(peer)
    if text == "model=?":
        text = f"model={peer.get('model') or '?'}  space={peer.get('embedding_space') or '?'}"
    return text


def format_peers(peers: list[dict]) -> str:
    """One line per peer: id, address, model, embedding space, trust, clock skew."""
    lines = [f"{len(peers)} peers"]
    for p in peers:
        trust = p.get("trust")
        skew = p.get("clock_skew_s")
        lines.append("  ".join([
            f"  {p.get('peer_id')}",
            f"addr={p.get('addr') or '?'}",
            _model_columns(p),
            f"trust={'new' if trust is None else trust}",
            f"clock={'?' if skew is None else f'{skew:+.1f}s'}"]
            + ([f"REFUSED={p['refused']}"] if p.get("refused") else [])))
    return "\n".join(lines)


def register_peers(sub) -> None:
    p = sub.add_parser("peers", help="list the running node's peers (via its local API)")
    p.add_argument("--api", default=DEFAULT_API, metavar="HOST:PORT", help=f"node API (default {DEFAULT_API})")
    p.add_argument("--json", action="store_true", help="print raw JSON")
    p.set_defaults(func=_get_cmd("/peers"))


def register_status(sub) -> None:
    p = sub.add_parser("status", help="show the running node's status (via its local API)")
    p.add_argument("--api", default=DEFAULT_API, metavar="HOST:PORT", help=f"node API (default {DEFAULT_API})")
    p.add_argument("--json", action="store_true", help="print raw JSON")
    p.set_defaults(func=_get_cmd("/status"))


def register_demo(sub) -> None:
    p = sub.add_parser("demo", help="start 4 local nodes (2 SmolLM2, 2 Gemma 3), ask one question by PBFT, print the trace")
    p.add_argument("--question", default="What is the capital of France? Answer in one sentence.")
    p.add_argument("--consensus", choices=CONSENSUS_METHODS, default="pbft")
    p.add_argument("--stand-in", action="store_true",
                   help="use the deterministic stand-in generator instead of the real models (fast smoke run)")
    p.add_argument("--embedder", default=None, metavar="NAME|hashing",
                   help="mesh embedding model (default: gemma3-270m, the real centred embedder; hashing: bag-of-words stand-in, for --stand-in runs)")
    p.add_argument("--keep-dir", action="store_true", help="keep the nodes' data dirs and logs")
    p.set_defaults(func=lambda a: __import__("node.demo", fromlist=["main"]).main(a))
