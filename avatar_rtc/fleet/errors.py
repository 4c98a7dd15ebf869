"""Errors of the fleet engines."""

from __future__ import annotations

from ..errors import AvatarRTCError

__all__ = ["EngineStateError"]


class EngineStateError(AvatarRTCError, RuntimeError):
    """The engine's state does not allow the call: a job submitted to a pool not started (or
    draining), or ``start()`` twice."""
