"""The public API: ``avatar_rtc.__all__`` resolves, and what its classes hand back is in it."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest

import avatar_rtc

# What users get from these without naming a type themselves.
ENTRY_POINTS = ("AvatarSession", "SyncAvatarSession", "VideoStream", "AudioStream", "Recorder")


def _classes_in(hint: Any) -> set[type]:
    """The avatar_rtc classes named by a type hint (through unions, generics, Awaitables)."""
    found: set[type] = set()
    if isinstance(hint, type) and hint.__module__.startswith("avatar_rtc."):
        found.add(hint)
    origin = typing.get_origin(hint)
    if isinstance(origin, type) and origin.__module__.startswith("avatar_rtc."):
        found.add(origin)
    for arg in typing.get_args(hint):
        found |= _classes_in(arg)
    return found


def test_every_name_in_all_resolves() -> None:
    for name in avatar_rtc.__all__:
        assert getattr(avatar_rtc, name) is not None, name
    assert sorted(avatar_rtc.__all__) == avatar_rtc.__all__  # one place to look a name up


def test_the_renamed_recorder_stream_stats_still_imports_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="RecordedStreamStats"):
        from avatar_rtc.record import StreamStats  # type: ignore[attr-defined]
    assert StreamStats is avatar_rtc.RecordedStreamStats


def test_the_public_attributes_of_a_session_are_of_exported_types() -> None:
    # Instance attributes (``clock``, ``video_pipeline``, ``speech``), which the test below
    # does not see: a user annotating code that uses them needs the type.
    session = avatar_rtc.AvatarSession(avatar_rtc.SessionOptions())
    public = {k: type(v) for k, v in vars(session).items() if not k.startswith("_")}
    assert public, "no public attributes: nothing checked"
    missing = {
        name: cls.__name__
        for name, cls in public.items()
        if cls.__module__.startswith("avatar_rtc.")
        and getattr(avatar_rtc, cls.__name__, None) is not cls
    }
    assert not missing, missing


def test_what_the_public_classes_return_is_exported() -> None:
    # (Methods and properties; instance attributes: the test above.)
    missing: dict[str, str] = {}
    for entry in ENTRY_POINTS:
        cls = getattr(avatar_rtc, entry)
        for name, member in inspect.getmembers(cls):
            if name.startswith("_"):
                continue
            target = member.fget if isinstance(member, property) else member
            if not callable(target):
                continue
            hints = typing.get_type_hints(target)
            for returned in _classes_in(hints.get("return")):
                if getattr(avatar_rtc, returned.__name__, None) is not returned:
                    missing[returned.__name__] = f"{entry}.{name}"
    assert not missing, missing
