"""Errors of the recorder."""

from __future__ import annotations

from ..errors import AvatarRTCError

__all__ = ["RecordError"]


class RecordError(AvatarRTCError):
    """The recording cannot be made as asked (container/codec mismatch, writer failure...)."""
