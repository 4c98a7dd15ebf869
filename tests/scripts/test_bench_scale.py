"""scripts/bench_scale.py: the receivers' options, with host candidates or relay-only (--turn)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_scale.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module
    spec.loader.exec_module(module)
    return module


def test_receivers_use_host_candidates_unless_turn_is_given(bench: ModuleType) -> None:
    # profile_receive.py calls it with two arguments: that must keep working.
    host = bench._options("http://127.0.0.1:9/api", "ks")
    assert host.ice.policy == "all" and host.ice.extra_servers == ()
    turn = {"url": "turn:127.0.0.1:3478?transport=udp", "username": "u", "credential": "p"}
    relay = bench._options("http://127.0.0.1:9/api", "ks", turn)
    assert relay.ice.policy == "relay"
    assert [s.url for s in relay.ice.extra_servers] == [turn["url"]]


def test_without_turn_no_coturn_is_started(bench: ModuleType) -> None:
    with bench.turn_server(False) as turn:
        assert turn is None
