"""Node daemons as real child processes on 127.0.0.1: used by `p2pmoa demo`, tests and bench.

Each :class:`NodeProcess` gets its own data dir, a free libp2p port and a free API port; its
identity is created before it starts, so its bootstrap address is known in advance.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from p2pmoa.identity import Ed25519Identity


class ProcessError(RuntimeError):
    """A node process died or did not become ready in time (see its log file)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class NodeProcess:
    """One ``p2pmoa node run`` child process.

    Args:
        name: label used in logs and the data dir name.
        data_dir: the node's data dir (identity, buffer).
        model: ``--model`` (``stand-in`` for tests).
        role, consensus, fault, extra: more flags.
    """

    name: str
    data_dir: Path
    model: str = "stand-in"
    role: str = "a helpful assistant"
    consensus: str = "pbft"
    fault: str | None = None
    embedder: str = "hashing"
    bootstrap: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    p2p_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.peer_id = Ed25519Identity.load_or_create(self.data_dir / "identity.key").peer_id

    @property
    def addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    @property
    def api(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"

    def argv(self) -> list[str]:
        a = [sys.executable, "-m", "p2pmoa.cli", "-v", "node", "run",
             "--listen", f"/ip4/127.0.0.1/tcp/{self.p2p_port}", "--api", self.api,
             "--data-dir", str(self.data_dir), "--model", self.model, "--role", self.role,
             "--consensus", self.consensus, "--embedder", self.embedder]
        for b in self.bootstrap:
            a += ["--bootstrap", b]
        if self.fault:
            a += ["--fault", self.fault]
        return a + list(self.extra)

    def start(self) -> "NodeProcess":
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout_s: float = 5.0):
        with urllib.request.urlopen(f"http://{self.api}{path}", timeout=timeout_s) as r:
            body = r.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def post(self, path: str, body: dict, timeout_s: float = 300.0) -> tuple[int, dict]:
        req = urllib.request.Request(f"http://{self.api}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def status(self) -> dict | None:
        try:
            return self.get("/status", timeout_s=2.0)
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout_s: float = 120.0) -> dict:
        """Poll ``/status`` until the API answers; raise :class:`ProcessError` on death/timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail()}")
            st = self.status()
            if st is not None:
                return st
            time.sleep(0.1)
        raise ProcessError(f"{self.name} not ready after {timeout_s} s; log:\n{self.tail()}")

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait, then SIGKILL if needed. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def wait_mesh(nodes: list[NodeProcess], timeout_s: float = 60.0) -> float:
    """Poll every node's /status until each sees all others subscribed to the query topic.

    Returns the seconds it took; raises :class:`ProcessError` on timeout.
    """
    t0 = time.monotonic()
    want = len(nodes) - 1
    while time.monotonic() - t0 < timeout_s:
        sts = [n.status() for n in nodes]
        for n in nodes:
            if not n.alive():
                raise ProcessError(f"{n.name} died; log:\n{n.tail()}")
        if all(s is not None and s.get("mesh_peers", 0) >= want for s in sts):
            return time.monotonic() - t0
        time.sleep(0.2)
    raise ProcessError(f"mesh not formed after {timeout_s} s: "
                       f"{[(n.name, (n.status() or {}).get('mesh_peers')) for n in nodes]}")
