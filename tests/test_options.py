"""One typed home per set of options: SessionOptions, VideoFormat/AudioFormat, RecordOptions.

A misspelt option is refused twice: by mypy (the public API has no ``**options: Any``) and at
run time (``TypeError``), before anything connects.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from avatar_rtc import AvatarSession, RecordOptions, SessionOptions
from avatar_rtc.errors import ConfigurationError
from avatar_rtc.redact import Secret, redact

ROOT = Path(__file__).resolve().parents[1]


def test_secrets_are_wrapped_and_codecs_normalised() -> None:
    options = SessionOptions(ks="ks-plain-1234", video_codecs=("vp8", "H264", "VP8"))  # type: ignore[arg-type]
    assert isinstance(options.ks, Secret) and options.ks.reveal() == "ks-plain-1234"
    assert "ks-plain-1234" not in repr(options)
    assert redact("ks-plain-1234") == "***"  # registered for log redaction too
    assert options.video_codecs == ("VP8", "H264")
    assert SessionOptions().video_codecs == ("H264", "VP8")  # every codec we can receive


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"whep_url": "http://127.0.0.1:1/whep", "api_url": "http://127.0.0.1:2"}, "excludes"),
        ({"whep_url": "http://127.0.0.1:1/whep", "ks": Secret("ks-abcd")}, "excludes"),
        ({"whep_url": "rtsp://127.0.0.1/whep"}, "http"),
        ({"video_codecs": ()}, "video_codecs"),
        ({"video_codecs": ("AV1",)}, "video_codecs"),
        ({"whep_url": "http://127.0.0.1:99999/whep"}, "Port out of range"),
        ({"api_url": "not-a-url"}, "api_url"),
        ({"api_url": "ftp://127.0.0.1/v1"}, "api_url"),
        ({"api_url": "http:///v1"}, "with a host"),
        ({"connect_timeout": 0.0}, "connect_timeout"),
        ({"connect_timeout": float("nan")}, "connect_timeout"),
        ({"keep_alive_interval": -1.0}, "keep_alive_interval"),
        ({"keyframe_wait": 0.0}, "keyframe_wait"),
        ({"max_playout_delay": 0.0}, "max_playout_delay"),
        ({"read_interval": -0.1}, "read_interval"),
        ({"read_interval": 0.25}, "read_interval"),  # (past PATH_SILENCE: outages untold)
        ({"read_interval": float("nan")}, "read_interval"),
    ],
)
def test_inconsistent_session_options_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SessionOptions(**changes)
    with pytest.raises(ConfigurationError, match=message):
        dataclasses.replace(SessionOptions(), **changes)  # replace() checks as well


def test_keyframe_wait_reaches_the_video_pipeline() -> None:
    """``SessionOptions.keyframe_wait`` is the video receive pipeline's concealment wait (its
    jitter buffers are built with it on every attach); ``None`` never conceals."""
    for wait in (0.25, None):
        session = AvatarSession(SessionOptions(keyframe_wait=wait))
        assert session.video_pipeline._keyframe_wait == wait
    assert AvatarSession().video_pipeline._keyframe_wait == SessionOptions().keyframe_wait == 1.0


def test_misspelt_options_are_type_errors_at_run_time() -> None:
    session = AvatarSession(SessionOptions(api_url="http://127.0.0.1:1", ks=Secret("ks-unused")))
    with pytest.raises(TypeError):
        session.record("out.mp4", fragmnet_seconds=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        session.record("out.mp4", mode="encode")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RecordOptions(fragmnet_seconds=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SessionOptions(conect_timeout=5.0)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="record mode"):
        RecordOptions(mode="transcode")  # type: ignore[arg-type]
    assert not Path("out.mp4").exists()


SNIPPET = textwrap.dedent(
    """
    import dataclasses
    from avatar_rtc import AvatarSession, RecordOptions, SessionOptions, SyncAvatarSession

    def use(session: AvatarSession, sync: SyncAvatarSession) -> None:
        session.record("out.mp4", fragmnet_seconds=0.5)
        session.record("out.mp4", RecordOptions(fragmnet_seconds=0.5))
        sync.record("out.mp4", mode="encode")
        SessionOptions(conect_timeout=5.0)
        dataclasses.replace(SessionOptions(), avatar="a")
        session.record("out.mp4", RecordOptions(mode="encode"))  # the one correct call
    """
)


@pytest.mark.slow
def test_misspelt_options_are_type_errors_for_mypy(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    lines = sorted({int(line.split(":")[1]) for line in errors})
    assert lines == [6, 7, 8, 9, 10], result.stdout + result.stderr
