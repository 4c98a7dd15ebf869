"""Test media (written once per session, by name) and their reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avatar_rtc.qa import QaReport, analyse_file
from tests.support import require_tool

from .media import write_media

MakeMedia = Callable[..., Path]
Analysed = Callable[..., QaReport]


@pytest.fixture(scope="session")
def make_media(tmp_path_factory: pytest.TempPathFactory) -> MakeMedia:
    """``make_media(name, **write_media_kwargs)``: the path of that file, written once."""
    require_tool("espeak-ng")
    folder = tmp_path_factory.mktemp("qa-media")

    def make(name: str, **kwargs: Any) -> Path:
        path = folder / name
        if not path.exists():
            write_media(path, **kwargs)
        return path

    return make


@pytest.fixture(scope="session")
def analysed(make_media: MakeMedia) -> Analysed:
    """``analysed(name, **write_media_kwargs)``: the report of that file, computed once."""
    reports: dict[str, QaReport] = {}

    def analyse(name: str, **kwargs: Any) -> QaReport:
        if name not in reports:
            reports[name] = analyse_file(make_media(name, **kwargs))
        return reports[name]

    return analyse
