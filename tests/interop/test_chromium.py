"""Receive from headless Chromium (real libwebrtc) over WHEP, in a private network namespace."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop import harness
from tests.interop.checks import assert_received_media

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_chromium_sender_video_and_audio(
    chromium_sender: harness.Sender,
    interop_client: str,
    codec: str,
    record_property: Callable[[str, object], None],
) -> None:
    assert chromium_sender.alive(), chromium_sender.log_tail()
    deleted_before = chromium_sender.deleted_sessions()
    summary = harness.receive_check(chromium_sender, codec, client=interop_client)
    record_property("ttff_s", summary["ttff_s"])
    record_property("client", summary["client"])
    assert summary["client"].startswith(interop_client), summary
    print(f"chromium {codec} client={summary['client']} ttff={summary['ttff_s']}")
    assert_received_media(summary, codec, chromium_sender, deleted_before)
    # The page draws a red (#e03020) square there: colours survived encode/decode/convert.
    r, g, b = summary["video"]["probe_rgb"]
    assert r > 150 and g < 110 and b < 110, summary["video"]
