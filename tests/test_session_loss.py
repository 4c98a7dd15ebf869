"""A loss for good as a program meets it: the session's ``error``, the streams that raise it,
leaving the session's block (see ``AvatarSession.error``)."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from avatar_rtc.emulator import Emulator
from avatar_rtc.errors import AvatarRTCError, WhepNotFoundError
from avatar_rtc.session import AvatarSession
from tests.support import emulator_options, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


def new_session(emu: Emulator) -> AvatarSession:
    return AvatarSession(emulator_options(emu, detect_speech=False))


async def lose(session: AvatarSession) -> None:
    """The service ends the session: a WHEP 404 on reconnecting makes the loss final."""
    live = session.live
    assert live is not None
    await live.client.end(live.handle)
    await wait_until(lambda: session.error is not None, within=30)  # a hang guard


async def test_the_events_handlers_see_the_error_already(emu: Emulator) -> None:
    session = new_session(emu)
    seen: dict[str, object] = {}
    session.on("disconnected", lambda e: seen.setdefault("disconnected", session.error))
    session.on("error", lambda e: seen.setdefault("error", session.error))
    await session.start()
    try:
        await session.wait_first_frame(20)
        await lose(session)
    finally:
        await session.close()
    assert isinstance(session.error, WhepNotFoundError)
    assert seen == {"disconnected": session.error, "error": session.error}  # was: None


async def test_reading_on_after_the_loss_does_not_grow_its_traceback(emu: Emulator) -> None:
    session = new_session(emu)
    await session.start()
    try:
        stream = session.video()
        await session.wait_first_frame(20)
        await lose(session)
        with pytest.raises(AvatarRTCError):
            while True:  # the frame queued before the loss first
                await stream.recv()
        depths = []
        for _ in range(50):
            with pytest.raises(AvatarRTCError) as raised:
                await stream.recv()
            depths.append(len(traceback.extract_tb(raised.value.__traceback__)))
        assert depths[-1] == depths[0], depths  # was: 3 frames more a read (kept alive)
    finally:
        await session.close()


async def test_a_loss_the_block_handled_is_not_raised_again_on_leaving_it(emu: Emulator) -> None:
    handled = []
    async with new_session(emu) as session:
        stream = session.video()
        await session.wait_first_frame(20)
        await lose(session)
        try:
            async for _ in stream:
                pass
        except AvatarRTCError as exc:
            handled.append(exc)  # the program dealt with it
    assert handled == [session.error] and session.error_raised


async def test_a_loss_nobody_read_is_raised_on_leaving_the_block(emu: Emulator) -> None:
    session = new_session(emu)
    with pytest.raises(WhepNotFoundError) as raised:
        async with session:
            session.video()  # opened, never read
            await session.wait_first_frame(20)
            await lose(session)
            await asyncio.sleep(0)
    assert raised.value is session.error and not session.error_raised
