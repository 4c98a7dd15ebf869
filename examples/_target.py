"""Where the examples connect: the real service, or an emulator they start themselves.

``--service`` takes the real service's settings from the environment (``AVATAR_KS``,
``AVATAR_ID``, optionally ``AVATAR_API_URL`` / ``AVATAR_VOICE_ID``); without it an example
starts the embedded emulator on loopback. Copying an example elsewhere: copy this file too,
or pass your own ``SessionOptions``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from avatar_rtc import IceOptions, Secret, SessionOptions

# The emulator listens on 127.0.0.1, which ICE skips unless asked for it.
LOOPBACK = IceOptions(host_addresses=("127.0.0.1",))


@contextlib.asynccontextmanager
async def target(service: bool) -> AsyncIterator[SessionOptions]:
    """``AvatarSession`` options: the real service, or an emulator running while in use."""
    if service:
        yield SessionOptions()
        return
    from avatar_rtc.emulator import Emulator

    async with Emulator() as emulator:
        yield SessionOptions(api_url=emulator.api_url, ks=Secret(emulator.ks), ice=LOOPBACK)


@contextlib.contextmanager
def sync_target(service: bool) -> Iterator[SessionOptions]:
    """``SyncAvatarSession`` options: the same, with the emulator in a background thread."""
    if service:
        yield SessionOptions()
        return
    from avatar_rtc.emulator import Emulator

    with Emulator().in_thread() as emulator:
        yield SessionOptions(api_url=emulator.api_url, ks=Secret(emulator.ks), ice=LOOPBACK)
