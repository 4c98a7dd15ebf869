"""The aiortc/aioice seam: every private name it relies on exists in the installed versions."""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import aioice
from aiortc import RTCPeerConnection

from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc import multi_turn

PACKAGE = Path(seam.__file__).resolve().parents[1]
# ``obj._x`` outside the seam that is our own object's private state, not aiortc's/aioice's.
OWN_PRIVATE_ACCESS = {("redact.py", "_value")}  # Secret.__eq__ comparing two Secrets


async def test_every_private_name_the_seam_uses_exists() -> None:
    assert await seam.missing_private_names() == []


def test_the_installed_versions_are_the_tested_ones() -> None:
    assert version("aiortc") in seam.TESTED_VERSIONS["aiortc"]
    assert version("aioice") in seam.TESTED_VERSIONS["aioice"]


def test_the_check_reports_a_missing_name(monkeypatch: object) -> None:
    """The check is not vacuous: a name that is gone is reported."""
    import asyncio

    names = (*seam.PRIVATE_NAMES, ("RTCRtpReceiver", "_renamed_in_a_future_release"))
    original = seam.PRIVATE_NAMES
    seam.PRIVATE_NAMES = names
    try:
        missing = asyncio.run(seam.missing_private_names())
    finally:
        seam.PRIVATE_NAMES = original
    assert missing == ["RTCRtpReceiver._renamed_in_a_future_release"]


async def test_accessors_work_on_a_real_peer_connection() -> None:
    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver("video", direction="recvonly")
        connection = seam.ice_connection(video)
        assert isinstance(connection, aioice.Connection)
        assert not seam.gathering_started(connection)
        assert seam.components(connection) == [1]
        assert seam.use_ip_versions(connection) == (True, True)
        assert not seam.relay_only(connection)
        assert seam.nominated_pairs(connection) == {}
        multi_turn.install(
            connection,
            servers=[],
            host_addresses=["127.0.0.1"],
            ssl_context=None,
            relay_grace=0.1,
            gather_timeout=1.0,
        )
        assert type(connection) is multi_turn.MultiTurnConnection
        await connection.gather_candidates()
        assert seam.gathering_started(connection)
        assert [c.host for c in connection.local_candidates] == ["127.0.0.1"]
        assert len(seam.protocols(connection)) == 1
        stats = seam.receiver_statistics(video.receiver)
        assert stats == {}
        assert seam.receiver_enabled(video.receiver) in (True, False)
    finally:
        await pc.close()


def _private_attribute_uses(path: Path) -> list[str]:
    """``x._name`` accesses in ``path`` where ``x`` is not ``self``/``cls`` (our own state)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and (path.name, node.attr) not in OWN_PRIVATE_ACCESS
        ):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.attr}")
    return found


def test_no_other_module_touches_aiortc_or_aioice_private_names() -> None:
    """Outside the seam, the package reaches no foreign private attribute (``obj._x``)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "aiortc_seam.py":
            continue
        offenders += _private_attribute_uses(path)
    assert offenders == []
