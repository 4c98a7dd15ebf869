"""Receive from headless Chromium (real libwebrtc) over WHEP, in a private network namespace."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop import harness
from tests.interop.checks import receive_and_check

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_chromium_sender_video_and_audio(
    chromium_sender: harness.Sender,
    interop_client: str,
    codec: str,
    record_property: Callable[[str, object], None],
) -> None:
    summary = receive_and_check(chromium_sender, "chromium", codec, interop_client,
                                record_property)  # fmt: skip
    # The page draws a red (#e03020) square there: colours survived encode/decode/convert.
    r, g, b = summary["video"]["probe_rgb"]
    assert r > 150 and g < 110 and b < 110, summary["video"]
