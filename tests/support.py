"""Test helpers. Interop peers may skip on a laptop but fail when CI is set."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from avatar_rtc.options import SessionOptions
from avatar_rtc.redact import Secret
from avatar_rtc.rtc.ice_options import IceOptions

if TYPE_CHECKING:
    from avatar_rtc.emulator import Emulator

IN_CI = bool(os.environ.get("CI"))
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
LOOPBACK_ICE = IceOptions(host_addresses=("127.0.0.1",))  # ICE pinned to loopback, per connection


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as module ``name`` (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python scripts/<name>.py ARGS...``, its output captured as text."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def require(condition: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) when an external peer is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing", pytrace=False)
    pytest.skip(f"{what} not available")


def require_tool(name: str) -> str:
    """Path of executable ``name``; skip locally / fail in CI when absent."""
    path = shutil.which(name)
    require(path is not None, f"executable {name!r}")
    assert path is not None
    return path


def emulator_options(emulator: Emulator, **changes: Any) -> SessionOptions:
    """Options for a session with ``emulator``: its API URL and admin KS, ICE on loopback
    (``LOOPBACK_ICE``); ``changes`` replace fields (``dataclasses.replace``, so any field,
    ``ice`` too)."""
    options = SessionOptions(api_url=emulator.api_url, ks=Secret(emulator.ks), ice=LOOPBACK_ICE)
    return replace(options, **changes)


@contextlib.contextmanager
def loopback_ice() -> Iterator[None]:
    """Make every aioice connection in this process gather 127.0.0.1 only.

    aioice leaves 127.0.0.1 out of host candidates; tests must stay on loopback.
    (Production code pins addresses per connection through ``IceOptions.host_addresses``.)
    """
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


async def wait_until(predicate: Callable[[], object], within: float) -> None:
    """Poll ``predicate`` every 20 ms; TimeoutError after ``within`` seconds (a hang guard:
    wait on what a test needs rather than sleeping a guessed time)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)
