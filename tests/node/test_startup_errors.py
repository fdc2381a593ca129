"""One-line start-up errors, exit code 2, each naming the problem and a fix (issue 9 counted
23-133 line tracebacks for these). Run through the real CLI entry point, in process."""
from __future__ import annotations

import socket

import pytest

from p2pmoa.cli import main
from tests.node.conftest import free_port


def run_cli(capsys, *argv: str) -> str:
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert rc == 2, (rc, err)
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    assert "Traceback" not in err
    return err


def node_run(capsys, tmp_path, *extra: str) -> str:
    base = {"--model": "stand-in", "--data-dir": str(tmp_path / "d"),
            "--api": f"127.0.0.1:{free_port()}", "--listen": f"/ip4/127.0.0.1/tcp/{free_port()}"}
    flags = list(extra)
    for k, v in base.items():
        if k not in flags:
            flags += [k, v]
    return run_cli(capsys, "node", "run", *flags)


@pytest.fixture()
def listening():
    """A port held by a listener that sets SO_REUSEPORT, as py-libp2p's does: a second node
    used to bind it too and both LISTENed on one port."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("model,fragment", [("no-such-model", "not a known model name"),
                                            ("/etc/hostname", "not a GGUF file")])
def test_unknown_model_or_non_gguf_file(capsys, tmp_path, model, fragment):
    err = node_run(capsys, tmp_path, "--model", model)
    assert fragment in err and "Fix: --model" in err


def test_api_port_in_use(capsys, tmp_path, listening):
    err = node_run(capsys, tmp_path, "--api", f"127.0.0.1:{listening}")
    assert "already in use" in err and "--api" in err


def test_libp2p_port_in_use_is_an_error_not_shared(capsys, tmp_path, listening):
    err = node_run(capsys, tmp_path, "--listen", f"/ip4/127.0.0.1/tcp/{listening}")
    assert "already in use" in err and "/tcp/0" in err


@pytest.mark.parametrize("addr,fragment", [("garbage", "not a multiaddr"),
                                           ("/ip4/127.0.0.1/udp/7700", "needs an /ip4"),
                                           ("/ip4/192.0.2.1/tcp/0", "not an address of this machine")])
def test_bad_listen_address(capsys, tmp_path, addr, fragment):
    assert fragment in node_run(capsys, tmp_path, "--listen", addr)


@pytest.mark.parametrize("addr,fragment", [("garbage", "not a multiaddr"),
                                           ("/ip4/127.0.0.1/tcp/7701", "has no /p2p/PEER_ID"),
                                           ("/ip4/127.0.0.1/tcp/7701/p2p/QmNotAPeer", "not a multiaddr")])
def test_malformed_bootstrap_is_refused_at_start(capsys, tmp_path, addr, fragment):
    assert fragment in node_run(capsys, tmp_path, "--bootstrap", addr)


def test_data_dir_that_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert "is not a directory" in node_run(capsys, tmp_path, "--data-dir", str(f))
    assert "is not a directory" in run_cli(capsys, "keygen", "--data-dir", str(f))


def test_data_dir_that_cannot_be_written(capsys, tmp_path):
    # /proc refuses new directories even to root (the tests may run as root, where chmod
    # does not stop writes)
    assert "is not writable" in node_run(capsys, tmp_path, "--data-dir", "/proc/p2pmoa-nope")
    assert "is not writable" in run_cli(capsys, "keygen", "--data-dir", "/proc/p2pmoa-nope")


def test_missing_roles_file_for_ask_local(capsys, tmp_path):
    err = run_cli(capsys, "ask", "hi?", "--local", "--roles", str(tmp_path / "missing.txt"))
    assert "missing.txt" in err and "--roles" in err


def test_sim_bad_n_values(capsys, tmp_path):
    err = run_cli(capsys, "sim", "bft", "--n-values", "abc", "--out", str(tmp_path / "o"))
    assert "--n-values" in err


def test_sim_unwritable_out(capsys):
    err = run_cli(capsys, "sim", "queue", "--out", "/proc/p2pmoa-nope", "--no-progress")
    assert "cannot write to --out" in err


def test_sim_graph_file_that_is_prose(capsys, tmp_path):
    g = tmp_path / "notes.txt"
    g.write_text("These are my notes about the mesh.\nhello world\n")
    err = run_cli(capsys, "sim", "mesh", "--topology", "file", "--graph-file", str(g),
                  "--out", str(tmp_path / "o"), "--no-progress")
    assert "line 1 is not an edge" in err
    g.write_text("hello world\n")  # parses as 2 nodes: refused, not reported as n = 150
    err = run_cli(capsys, "sim", "mesh", "--topology", "file", "--graph-file", str(g),
                  "--out", str(tmp_path / "o"), "--no-progress")
    assert "has 2 nodes" in err
