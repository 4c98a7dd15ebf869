"""Fixtures of the emulator's Control API tests (media off: no encoders, fast)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from avatar_rtc.emulator import Emulator

from .helpers import Api


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(media_enabled=False) as emulator:
        yield emulator


@pytest.fixture
async def api(emu: Emulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(emu, http)
