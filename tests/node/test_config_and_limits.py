"""Config precedence and validation; the token bucket and backoff that bound the transport."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.cli import config_from_args
from node.config import ConfigError, NodeConfig, load_config
from node.transport import Backoff, TokenBucket
from p2pmoa.cli import build_parser


def test_flags_override_toml_which_overrides_defaults(tmp_path):
    toml = tmp_path / "node.toml"
    toml.write_text('model = "gemma3-270m"\nrole = "from file"\nbootstrap = ["/ip4/1.2.3.4/tcp/1/p2p/X"]\n'
                    'api = "127.0.0.1:9000"\ndeadline-s = 7\n')
    args = build_parser().parse_args(["node", "run", "--config", str(toml), "--role", "from flag",
                                      "--bootstrap", "/ip4/5.6.7.8/tcp/2/p2p/Y"])
    cfg = config_from_args(args)
    assert cfg.model == "gemma3-270m"            # file beats default
    assert cfg.role == "from flag"               # flag beats file
    assert cfg.bootstrap == ("/ip4/5.6.7.8/tcp/2/p2p/Y",)
    assert cfg.api_port == 9000 and cfg.deadline_s == 7.0
    assert cfg.consensus == NodeConfig().consensus


@pytest.mark.parametrize("content, fragment", [
    ('consensus = "raft"', "consensus"),
    ('api = "localhost"', "api"),
    ('buffer_max = 0', "buffer_max"),
    ('fault = "byzantine"', "fault"),
    ('deadline_s = "soon"', "deadline_s"),
    ('colour = "blue"', "unknown setting"),
    ('model = [', "not valid TOML"),
])
def test_bad_config_is_a_clear_typed_error(tmp_path, content, fragment):
    toml = tmp_path / "bad.toml"
    toml.write_text(content + "\n")
    with pytest.raises(ConfigError, match=fragment):
        load_config(toml)


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.1, 1000), burst=st.integers(1, 50),
       gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200))
def test_token_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(rate, burst, gaps):
    now = 0.0
    b = TokenBucket(rate, burst, now)
    admitted = 0
    for g in gaps:
        now += g
        admitted += b.take(now)
    assert admitted <= burst + rate * now + 1e-6


@given(seed=st.integers(0, 2**32), failures=st.integers(1, 40))
def test_backoff_grows_but_stays_under_its_cap(seed, failures):
    b = Backoff(0.5, 30.0, random.Random(seed))
    delays = [b.failed(0.0) for _ in range(failures)]
    assert all(0.25 <= d <= 30.0 for d in delays)
    assert not b.ready(0.0) and b.ready(31.0)
    b.succeeded()
    assert b.ready(0.0) and b.failures == 0
