"""Assertions shared by the interop tests: decoded video and audio look like real media."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.interop import harness

MIN_VIDEO_FRAMES = 30
MIN_AUDIO_FRAMES = 50
MIN_AUDIO_RMS = 300.0  # int16 scale; both senders play a 440 Hz tone at ~0.3 full scale


def assert_received_media(
    summary: dict[str, Any], codec: str, sender: harness.Sender, deleted_before: int
) -> None:
    context = f"summary={summary}\n--- sender log ---\n{sender.log_tail()}"
    assert summary["error"] is None, context
    assert summary["ok"], context
    assert summary["negotiated"].get("video", "").upper() == codec, context
    video, audio = summary["video"], summary["audio"]
    assert video["frames"] >= MIN_VIDEO_FRAMES, context
    # Chromium may adapt the canvas down (e.g. 480x360): check sanity, not an exact size.
    assert 64 <= video["width"] <= 4096 and 64 <= video["height"] <= 4096, context
    assert video["distinct_pixels"] and video["max_std"] > 1.0, context
    assert audio["frames"] >= MIN_AUDIO_FRAMES, context
    assert audio["sample_rate"] == 48000, context
    assert audio["max_rms"] > MIN_AUDIO_RMS, context
    assert summary["ttff_s"] is not None and summary["ttff_s"] > 0, context
    # WHEP: the client DELETEs its resource when it closes.
    assert sender.deleted_sessions() == deleted_before + 1, context


def receive_and_check(
    sender: harness.Sender,
    name: str,
    codec: str,
    client: str,
    record_property: Callable[[str, object], None],
) -> dict[str, Any]:
    """Receive from ``sender`` with ``client``, record the time to first frame, check the
    media (:func:`assert_received_media`); the summary, for checks of the sender's own."""
    assert sender.alive(), sender.log_tail()
    deleted_before = sender.deleted_sessions()
    summary = harness.receive_check(sender, codec, client=client)
    record_property("ttff_s", summary["ttff_s"])
    record_property("client", summary["client"])
    assert summary["client"].startswith(client), summary
    print(f"{name} {codec} client={summary['client']} ttff={summary['ttff_s']}")
    assert_received_media(summary, codec, sender, deleted_before)
    return summary
