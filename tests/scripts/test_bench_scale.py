"""scripts/bench_scale.py: the receivers' options, with host candidates or relay-only (--turn)."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.support import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench_scale")


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
