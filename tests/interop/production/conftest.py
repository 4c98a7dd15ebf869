"""One production topology (namespace + coturn + firewall) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.harness import netns_problem
from tests.interop.production.harness import Topology
from tests.support import require, require_tool

TOOLS = ("unshare", "nsenter", "ip", "nft", "sysctl", "ss", "turnserver", "openssl")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    for tool in TOOLS:
        require_tool(tool)
    problem = netns_problem()
    require(problem is None, problem or "")
    with Topology.start(tmp_path_factory.mktemp("production")) as topo:
        yield topo
