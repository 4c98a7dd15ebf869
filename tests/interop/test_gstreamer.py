"""Receive from GStreamer webrtcbin (an independent WebRTC stack) over WHEP on loopback."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop import harness
from tests.interop.checks import receive_and_check

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_gstreamer_sender_video_and_audio(
    gst_sender: harness.Sender,
    interop_client: str,
    codec: str,
    record_property: Callable[[str, object], None],
) -> None:
    summary = receive_and_check(gst_sender, "gstreamer", codec, interop_client, record_property)
    if summary["client"].startswith("avatar_rtc"):
        # webrtcbin answers "nack pli" but no generic "nack": we must not NACK it, and we
        # know from the SDP that it repairs nothing (each hole is waited for only briefly).
        video = summary["stats"]["video"]
        assert video["nacks_sent"] == 0 and not video["sender_repairs"], video
        assert video["hole_wait"] < 0.15, video
