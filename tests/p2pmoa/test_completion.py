"""Shell completion (argcomplete): the printed code completes commands and flags in bash, and
the protocol the zsh and fish scripts use answers with the same words."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from p2pmoa.cli import main

BIN = Path(sys.executable).parent  # the venv's bin/, where the `p2pmoa` script is


def complete(line: str, tmp_path, shell: str = "bash") -> list[str]:
    """What `p2pmoa` answers to the completion request the shell scripts make for ``line``."""
    out = tmp_path / "reply"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": shell, "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    if shell == "fish":  # what the fish script sets (see `p2pmoa completion fish`)
        env.update(_ARGCOMPLETE_IFS="\n", _ARGCOMPLETE_DFS="\t", _ARGCOMPLETE_SUPPRESS_SPACE="1")
    subprocess.run([str(BIN / "p2pmoa")], env=env, check=True, timeout=60,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sep = "\n" if shell == "fish" else "\013"
    return [w.split("\t")[0].split(":")[0].strip() for w in out.read_text().split(sep) if w.strip()]


def test_completes_subcommands_and_flags_of_every_package(tmp_path):
    assert "models" in complete("p2pmoa mo", tmp_path)
    assert "--log-format" in complete("p2pmoa node run --log-f", tmp_path)  # node/
    assert "--ray" in complete("p2pmoa sim bft --r", tmp_path)               # simulations/
    assert set(complete("p2pmoa --log-format ", tmp_path)) == {"text", "json"}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shells_protocol_gets_the_same_words(tmp_path, shell):
    assert set(complete("p2pmoa models ", tmp_path, shell)) >= {"list", "add", "rm", "show"}


def test_bash_code_completes_when_sourced(tmp_path):
    script = ('source <(p2pmoa completion bash); '
              'COMP_LINE="p2pmoa models sh"; COMP_POINT=${#COMP_LINE}; '
              'COMP_WORDS=(p2pmoa models sh); COMP_CWORD=2; '
              '_python_argcomplete p2pmoa sh models; echo "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["show"]


@pytest.mark.parametrize("shell, needle", [("bash", "complete -o"), ("zsh", "#compdef p2pmoa"),
                                           ("fish", "complete --command p2pmoa")])
def test_completion_command_prints_each_shells_code(capsys, shell, needle):
    assert main(["completion", shell]) == 0
    assert needle in capsys.readouterr().out
