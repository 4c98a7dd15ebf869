"""KeepAlive: a background task that keeps a session from idling out.

The docs ask for a keep-alive every 10 s. A 404/410 answer means the session is gone
(ended elsewhere or expired): the task stops and reports it. Any other failure is logged and
the next tick tries again. A 401 three times with no success between most likely means the
session's token expired (it lasts ~24 h and nothing renews it): said once, at warning level,
and the task goes on (the session is not gone yet: its media flows until the service idles
it out, which the media watchdog then sees; reporting it gone would reconnect a working
connection).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from types import TracebackType

from ..errors import (
    ApiError,
    AuthenticationError,
    AvatarRTCError,
    PermissionDeniedError,
    SessionEndedError,
    SessionNotFoundError,
)
from .control_calls import ControlCalls
from .models import SessionHandle

__all__ = ["DEFAULT_KEEP_ALIVE_INTERVAL", "KeepAlive", "KeepAliveState"]

_log = logging.getLogger(__name__)

DEFAULT_KEEP_ALIVE_INTERVAL = 10.0
AUTH_FAILURES_EXPIRED = 3  # 401s with no success between: the token expired (one: a glitch)


class KeepAliveState(enum.Enum):
    IDLE = "idle"  # not started
    RUNNING = "running"
    STOPPED = "stopped"  # stopped by stop()
    GONE = "gone"  # the service answered 404/410: the session no longer exists


class KeepAlive:
    """Send keep-alive for ``handle`` every ``interval`` seconds until stopped or gone.

    ``on_gone(error)`` is called once, from the task, when the service answers 404/410;
    :attr:`stopped_reason` then holds that error. ``token_expired`` is set after
    :data:`AUTH_FAILURES_EXPIRED` 401 answers with no success between.
    """

    def __init__(
        self,
        client: ControlCalls,
        handle: SessionHandle,
        *,
        interval: float = DEFAULT_KEEP_ALIVE_INTERVAL,
        on_gone: Callable[[ApiError], object] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.interval = interval
        self.state = KeepAliveState.IDLE
        self.stopped_reason: ApiError | None = None
        self.last_error: AvatarRTCError | None = None
        self.sent = 0  # keep-alives the service accepted
        self.token_expired = False  # see AUTH_FAILURES_EXPIRED
        self._client = client
        self._handle = handle
        self._on_gone = on_gone
        self._gone = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"KeepAlive({self._handle.session_id!r}, state={self.state.value})"

    def start(self) -> None:
        """Start the background task (needs a running event loop)."""
        if self._task is not None:
            raise RuntimeError("KeepAlive already started")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"keep-alive {self._handle.session_id}"
        )
        self.state = KeepAliveState.RUNNING

    async def stop(self) -> None:
        """Cancel the task and wait for it to finish. Idempotent."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            # wait() rather than await: a cancellation of *our caller* must still propagate.
            await asyncio.wait([task])
        if self.state is not KeepAliveState.GONE:
            self.state = KeepAliveState.STOPPED

    async def wait_gone(self) -> ApiError:
        """Wait until the service reports the session gone; the 404/410 error."""
        await self._gone.wait()
        assert self.stopped_reason is not None
        return self.stopped_reason

    async def __aenter__(self) -> KeepAlive:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        refused = 0  # 401s since the last success
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._client.keep_alive(self._handle)
            except (SessionNotFoundError, SessionEndedError) as error:
                self._report_gone(error)
                return
            except AvatarRTCError as error:
                expired = isinstance(error, AuthenticationError) and not isinstance(
                    error, PermissionDeniedError
                )
                refused += expired  # (other failures between them do not start it over)
                self.last_error = error
                if expired and refused >= AUTH_FAILURES_EXPIRED:
                    if not self.token_expired:
                        self.token_expired = True
                        _log.warning(
                            "keep-alive of session %s refused %d times (HTTP 401): its token "
                            "has most likely expired; the service will end the session",
                            self._handle.session_id,
                            refused,
                        )
                    continue
                _log.warning(
                    "keep-alive of session %s failed: %s; next try in %g s",
                    self._handle.session_id,
                    error,
                    self.interval,
                )
            else:
                refused = 0
                self.token_expired = False
                self.sent += 1

    def _report_gone(self, error: ApiError) -> None:
        session_id = self._handle.session_id
        _log.info("session %s is gone (HTTP %d); keep-alive stops", session_id, error.status)
        self.state = KeepAliveState.GONE
        self.stopped_reason = error
        self._gone.set()
        if self._on_gone is not None:
            try:
                self._on_gone(error)
            except Exception:
                _log.exception("on_gone callback of session %s failed", session_id)
