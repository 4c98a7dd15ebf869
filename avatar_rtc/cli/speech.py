"""``--say TEXT`` / ``--say-audio FILE``: checked before connecting, said in the order given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .arguments import Speech

if TYPE_CHECKING:
    from ..session import AvatarSession
    from .common import Target

__all__ = ["check_speech", "speak"]


def check_speech(speech: Sequence[Speech], target: Target) -> None:
    """``ConfigurationError`` when there is speech but no Control API to send it to, or a
    ``--say-audio`` file that is not audio (found now, not after connecting and recording)."""
    if speech and target.kind == "whep":
        raise ConfigurationError(
            "--say/--say-audio need the Control API (not available with --whep-url)"
        )
    from ..api.audio_duration import audio_duration

    for item in speech:
        if item.kind == "audio":
            try:
                audio_duration(item.value)  # decodes it: a short file takes milliseconds
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"--say-audio {item.value}: {exc}") from None


async def speak(session: AvatarSession, speech: Sequence[Speech]) -> None:
    """Send each text / audio file in order (the service queues the turns)."""
    for item in speech:
        if item.kind == "text":
            await session.say(item.value)
        else:
            await session.say_audio(item.value)
