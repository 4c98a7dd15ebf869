"""A session scope: create + init-client + keep-alive, and ``end`` on every way out.

::

    async with client.open_session(avatar_id, voice_id=voice) as live:
        live.client_config.whep_url      # for the media leg
        await live.say_text("Hello")

Every session costs resources on the service until it is ended, so the scope sends
``end`` after a normal exit, an exception and a task cancellation alike, and even
when the cancellation arrives while ``create`` is still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import ApiError, AvatarRTCError
from .control_calls import ControlCalls
from .keepalive import DEFAULT_KEEP_ALIVE_INTERVAL, KeepAlive, KeepAliveState
from .models import ClientConfig, SessionHandle
from .text_chunks import DEFAULT_MAX_CHUNK_CHARS

__all__ = ["LiveSession", "open_session"]

_log = logging.getLogger(__name__)

END_TIMEOUT = 10.0  # seconds the final `end` (with its retries) may take
# Seconds a create given up on (cancelled: Ctrl-C, connect_timeout) is still waited for, to end
# the session it may have opened: an answer on its way comes well within it, and a request that
# has none by then (a dead network: 15 s to its own timeout) must not hold the caller.
CREATE_GRACE = 5.0


class LiveSession:
    """An initialised session whose keep-alive is running, bound to its client."""

    def __init__(
        self,
        client: ControlCalls,
        handle: SessionHandle,
        client_config: ClientConfig,
        keep_alive: KeepAlive,
    ) -> None:
        self.client = client
        self.handle = handle
        self.client_config = client_config
        self.keep_alive = keep_alive
        self.ended = False

    def __repr__(self) -> str:
        return f"LiveSession({self.session_id!r}, keep_alive={self.keep_alive.state.value})"

    @property
    def session_id(self) -> str:
        return self.handle.session_id

    @property
    def gone(self) -> bool:
        """The service reported the session ended or expired (keep-alive got 404/410)."""
        return self.keep_alive.state is KeepAliveState.GONE

    async def say_text(
        self,
        text: str,
        *,
        turn_id: str | None = None,
        max_chunk_chars: int = DEFAULT_MAX_CHUNK_CHARS,
    ) -> str:
        return await self.client.say_text(
            self.handle, text, turn_id=turn_id, max_chunk_chars=max_chunk_chars
        )

    async def say_audio(
        self,
        audio: str | Path | bytes,
        *,
        duration: float | None = None,
        turn_id: str | None = None,
        content_type: str | None = None,
        convert: bool = True,
    ) -> str:
        return await self.client.say_audio(
            self.handle,
            audio,
            duration=duration,
            turn_id=turn_id,
            content_type=content_type,
            convert=convert,
        )

    async def interrupt(self) -> None:
        await self.client.interrupt(self.handle)

    async def end(self) -> bool:
        """Stop keep-alive and end the session; ``False`` if it was already gone or ended.

        The scope calls this on exit; calling it earlier is fine.
        """
        if self.ended:
            return False
        self.ended = True  # before the await, so a concurrent second call does not resend
        await self.keep_alive.stop()
        return await self.client.end(self.handle)


@contextlib.asynccontextmanager
async def open_session(
    client: ControlCalls,
    avatar_id: str,
    voice_id: str | None = None,
    *,
    keep_alive_interval: float = DEFAULT_KEEP_ALIVE_INTERVAL,
    on_gone: Callable[[ApiError], object] | None = None,
    **voice_extra: Any,
) -> AsyncIterator[LiveSession]:
    """Create a session, init its client, keep it alive; end it when the block exits.

    Errors of ``create``/``init-client`` propagate (after ``end`` for the latter). A
    failure of the final ``end`` is logged, not raised, so it never hides the block's
    own exception.
    """
    handle = await _create(client, avatar_id, voice_id, voice_extra)
    keep_alive = KeepAlive(client, handle, interval=keep_alive_interval, on_gone=on_gone)
    live: LiveSession | None = None
    try:
        config = await client.init_client(handle)
        live = LiveSession(client, handle, config, keep_alive)
        keep_alive.start()
        yield live
    finally:
        ending = live.end() if live is not None else client.end(handle)
        await _complete_despite_cancel(_logged_end(handle, ending))


async def _create(
    client: ControlCalls, avatar_id: str, voice_id: str | None, voice_extra: dict[str, Any]
) -> SessionHandle:
    task = asyncio.ensure_future(client.create(avatar_id, voice_id, **voice_extra))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError as cancelled:
        # The request may already have opened the session: let it finish, end what it opened.
        await _complete_despite_cancel(_end_created(client, task))
        if task.done() and not task.cancelled() and task.exception() is not None:
            # Its answer (a 401, a 503), for a caller whose timeout cancelled us: it says more
            # than "no answer" (AvatarSession.start reads it). Still a cancellation here.
            cancelled.__cause__ = task.exception()
        raise


async def _end_created(client: ControlCalls, create: asyncio.Future[SessionHandle]) -> None:
    await asyncio.wait([create], timeout=CREATE_GRACE)
    if not create.done():
        create.cancel()
        _log.warning(
            "create did not answer within %g s of being given up: a session it may have "
            "opened is left to the service's idle timeout",
            CREATE_GRACE,
        )
        return
    if not create.cancelled() and create.exception() is None:
        handle = create.result()
        await _logged_end(handle, client.end(handle))


async def _logged_end(handle: SessionHandle, ending: Awaitable[bool]) -> None:
    try:
        # Bounded: over a dead network its retries took 64 s; the service idles it out.
        async with asyncio.timeout(END_TIMEOUT):
            await ending
    except TimeoutError:
        _log.warning("could not end session %s within %g s", handle.session_id, END_TIMEOUT)
    except AvatarRTCError as error:
        _log.warning("could not end session %s: %s", handle.session_id, error)


async def _complete_despite_cancel(cleanup: Awaitable[None]) -> None:
    """Run ``cleanup`` to the end even if our task is cancelled meanwhile, then re-raise.

    A second cancellation while waiting abandons the wait (the cleanup keeps running).
    """
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
