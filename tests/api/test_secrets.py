"""No KS, JWT or TURN credential in logs, reprs or exception messages.

The library must not leak them by itself, so the defence-in-depth RedactingFilter
(installed by tests/conftest.py) is taken off the loggers for these tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatar_rtc.api import ControlClient, SessionHandle, TurnConfig
from avatar_rtc.emulator import Emulator
from avatar_rtc.errors import AvatarRTCError, ServerError
from avatar_rtc.redact import RedactingFilter, Secret

from .conftest import AVATAR_ID, FAST_RETRY, VOICE_ID

TURN_USER = "turn-user-8c1f0e"
TURN_CRED = "turn-cred-4b9a77d2"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[_Collect]:
    """Every log record of the process at DEBUG, with the redaction filters removed."""
    loggers = [logging.getLogger()] + [
        obj for obj in logging.Logger.manager.loggerDict.values() if isinstance(obj, logging.Logger)
    ]
    # On loggers, and on the package logger's handler that masks records on their way up.
    holders = [*loggers, *(h for lg in loggers for h in lg.handlers)]
    removed = [(lg, f) for lg in holders for f in lg.filters if isinstance(f, RedactingFilter)]
    for lg, f in removed:
        lg.removeFilter(f)
    root = logging.getLogger()
    old_level = root.level
    saved = {name: logging.getLogger(name).level for name in ("aiohttp", "asyncio", "avatar_rtc")}
    handler = _Collect()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in saved:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        for lg, f in removed:
            lg.addFilter(f)


def _assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


async def test_a_full_session_leaks_nothing(all_logs: _Collect, wav_file: Path) -> None:
    turn = TurnConfig("turn.example.com", Secret(TURN_USER), Secret(TURN_CRED))
    async with Emulator(media_enabled=False, turn=turn) as emu:
        ks = emu.ks
        emu.faults.fail_next("keep-alive", 503)  # a retry is logged too
        async with ControlClient(emu.api_url, ks, retry=FAST_RETRY) as client:
            reprs = [repr(client)]
            async with client.open_session(AVATAR_ID, VOICE_ID, keep_alive_interval=0.05) as live:
                token = live.handle.token.reveal()
                assert live.client_config.turn is not None
                await live.say_text("Hello. " * 5, max_chunk_chars=10)
                await live.say_audio(wav_file)
                await live.interrupt()
                await asyncio.sleep(0.2)
                reprs += [repr(live), repr(live.handle), repr(live.client_config)]
                reprs += [repr(live.keep_alive), str(live.client_config.turn)]
            errors = await _provoke_errors(emu, client, live.handle)
            await client.list_catalog("Visual")
    secrets = [ks, token, TURN_USER, TURN_CRED]
    assert len(all_logs.lines) > 10
    assert any("avatar_rtc.api" in line for line in all_logs.lines)
    _assert_clean("\n".join(all_logs.lines), secrets)
    _assert_clean("\n".join(reprs), secrets)
    _assert_clean("\n".join(f"{e!s} {e!r} {getattr(e, 'error', '')}" for e in errors), secrets)


async def _provoke_errors(
    emu: Emulator, client: ControlClient, handle: SessionHandle
) -> list[AvatarRTCError]:
    """Errors whose server message echoes a secret, plus an ordinary one."""
    errors: list[AvatarRTCError] = []
    emu.faults.fail_next("create", 500, error=f"bad KS {emu.ks}")
    emu.faults.fail_next("interrupt", 502, error=f"token {handle.token.reveal()} rejected")
    for call in (lambda: client.create(AVATAR_ID), lambda: client.interrupt(handle)):
        with pytest.raises(ServerError) as info:
            await call()
        errors.append(info.value)
    async with ControlClient(emu.api_url, "wrong-ks-value") as bad:
        with pytest.raises(AvatarRTCError) as info2:
            await bad.create(AVATAR_ID)
        errors.append(info2.value)
    return errors
