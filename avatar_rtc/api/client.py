"""ControlClient: the Control API's calls (:mod:`.control_calls`) plus a session scope.

The scope (:mod:`.session_scope`) is built on the calls, and this class on both, so neither
module imports the other's user.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..errors import ApiError
from .control_calls import ControlCalls
from .keepalive import DEFAULT_KEEP_ALIVE_INTERVAL
from .session_scope import LiveSession, open_session

__all__ = ["ControlClient"]


class ControlClient(ControlCalls):
    """Async client of the Control API: every call of :class:`.ControlCalls` (arguments,
    defaults and retries are described there) plus :meth:`open_session`."""

    def open_session(
        self,
        avatar_id: str,
        voice_id: str | None = None,
        *,
        keep_alive_interval: float = DEFAULT_KEEP_ALIVE_INTERVAL,
        on_gone: Callable[[ApiError], object] | None = None,
        **voice_extra: Any,
    ) -> AbstractAsyncContextManager[LiveSession]:
        """``async with client.open_session(...) as live``; see :func:`.session_scope.open_session`.

        ``voice_extra`` (speed, language, ...) goes into ``voiceConfig`` like for :meth:`create`.
        """
        return open_session(
            self,
            avatar_id,
            voice_id,
            keep_alive_interval=keep_alive_interval,
            on_gone=on_gone,
            **voice_extra,
        )
