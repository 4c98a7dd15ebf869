"""ICE restart through WHEP PATCH (RFC 9725 section 4.3, the WHEP draft), at both ends.

The peer connection, its DTLS/SRTP session, SSRCs and receivers stay; only the ICE agent
starts over and checks a new path (:meth:`.multi_turn.MultiTurnConnection.restart`):

- the player (:func:`offer`, then :func:`complete`): new credentials and candidates gathered
  again (a TURN server that restarted lost our allocation), sent as an sdpfrag with
  ``If-Match: "*"``; the server's answer (its new credentials, and its candidates or, when it
  lists none, the ones it had) starts our checks;
- the server (:func:`answer`, the emulator's WHEP resource): new credentials, its candidates
  as they were, the player's new ones; its checks run in the background while the answer goes
  back.
"""

from __future__ import annotations

import asyncio

from aioice import Candidate

from .multi_turn import MultiTurnConnection
from .sdp_candidates import SdpFragment, build_sdpfrag

__all__ = ["answer", "complete", "fragment", "offer"]


def fragment(ice: MultiTurnConnection, mid: str) -> str:
    """``ice``'s credentials and local candidates as an sdpfrag (end-of-candidates: gathered)."""
    return build_sdpfrag(
        ice_ufrag=ice.local_username,
        ice_pwd=ice.local_password,
        mid=mid,
        candidates=[candidate.to_sdp() for candidate in ice.local_candidates],
        end=True,
    )


async def offer(ice: MultiTurnConnection, mid: str) -> tuple[str, list[Candidate]]:
    """Begin the player's restart: the sdpfrag to PATCH, and the server's candidates from
    before (for :func:`complete`, when its answer lists none)."""
    before = [c for c in ice.remote_candidates if c.type != "prflx"]
    await ice.restart(regather=True)
    return fragment(ice, mid), before


async def complete(ice: MultiTurnConnection, server: SdpFragment, before: list[Candidate]) -> None:
    """Take the server's answer and run the checks until a new pair is nominated;
    ``ConnectionError`` when ICE fails, ``ValueError`` for an answer without credentials."""
    await _take_remote(ice, server, before)
    await ice.connect()


async def answer(
    ice: MultiTurnConnection, player: SdpFragment, mid: str
) -> tuple[str, asyncio.Task[None]]:
    """The server's side: restart with the player's new credentials and candidates; returns
    the answer sdpfrag and the task running the checks (it raises ``ConnectionError`` when
    ICE fails). ``ValueError`` for a fragment without credentials or usable candidates."""
    if not _udp(player, []):
        raise ValueError("an ICE restart needs the player's UDP candidates")
    await ice.restart(regather=False)
    await _take_remote(ice, player, [])
    return fragment(ice, mid), asyncio.create_task(ice.connect())


async def _take_remote(
    ice: MultiTurnConnection, peer: SdpFragment, before: list[Candidate]
) -> None:
    if not peer.ice_ufrag or not peer.ice_pwd:
        raise ValueError("an ICE restart fragment needs a=ice-ufrag and a=ice-pwd")
    ice.remote_username, ice.remote_password = peer.ice_ufrag, peer.ice_pwd
    for candidate in _udp(peer, before):
        await ice.add_remote_candidate(candidate)
    await ice.add_remote_candidate(None)


def _udp(peer: SdpFragment, before: list[Candidate]) -> list[Candidate]:
    """The fragment's UDP candidates (aioice has no ICE-TCP) with a port a socket can send to,
    or ``before`` if it lists none."""
    listed: list[Candidate] = []
    for value in peer.all_candidates():
        try:
            candidate = Candidate.from_sdp(value)
        except ValueError:
            continue
        if candidate.transport.lower() == "udp" and 0 < candidate.port < 65536:
            listed.append(candidate)
    return listed or before
