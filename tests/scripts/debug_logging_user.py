"""A program using the library as its users do: ``logging.basicConfig(level=DEBUG)``, then one
session through TURN (relay only), nothing else about logging or secrets.

argv: API_URL KS TURN_JSON OUT_JSON. TURN_JSON holds the coturn ports and CA file; OUT_JSON
receives the secrets this session used and the selected candidate type, for the test to look
for in the logs (this process never prints them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from avatar_rtc import AvatarSession, IceOptions, SessionOptions
from avatar_rtc.rtc.ice_servers import TurnPorts


async def main(api_url: str, ks: str, turn: dict[str, Any]) -> dict[str, Any]:
    ports = TurnPorts(udp=tuple(turn["udp"]), tcp=turn["tcp"], tls=turn["tls"])
    ice = IceOptions(policy="relay", turn_ports=ports, turn_ca_file=str(turn["ca_file"]))
    # The KS a plain str, as an untyped program passes it: the library wraps it itself.
    async with AvatarSession(SessionOptions(api_url=api_url, ks=ks, ice=ice)) as avatar:  # type: ignore[arg-type]
        await avatar.wait_first_frame()
        await avatar.say("Hello.")
        await asyncio.sleep(1.0)
        pair, live = avatar.selected_pair, avatar.live
        assert pair is not None and live is not None and live.client_config.turn is not None
        used = {
            "jwt": live.handle.token.reveal(),
            "turn_username": live.client_config.turn.username.reveal(),
            "turn_credential": live.client_config.turn.credential.reveal(),
        }
        return {"secrets": used, "local_type": pair.local_type}


if __name__ == "__main__":
    logging.basicConfig(level=logging.DEBUG)
    api_url, ks, turn_json, out = sys.argv[1:]
    used = asyncio.run(main(api_url, ks, json.loads(turn_json)))
    Path(out).write_text(json.dumps(used))
