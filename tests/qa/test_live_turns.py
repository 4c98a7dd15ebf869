"""Turns and live thresholds, from figures fed directly: the latency rules and percentiles."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from avatar_rtc.media.frames import AudioFrame
from avatar_rtc.qa import LiveQa, LiveResult, MediaQa, Say, Thresholds, latency_percentiles
from avatar_rtc.qa.live import _SayCall
from avatar_rtc.qa.network import NetworkResult
from avatar_rtc.qa.spans import Span
from avatar_rtc.qa.turns import measure_turns

FPS = 25
RATE = 48_000


def test_percentiles_interpolate_between_ranked_values_and_skip_unmeasured() -> None:
    # ranked 0.1 0.2 0.3 0.4 1.0: P50 is the middle one; P95 lies at rank 3.8 (0.4 + 0.8 x
    # 0.6), P99 at 3.96 (0.4 + 0.96 x 0.6)
    p = latency_percentiles([0.4, None, 0.1, 1.0, 0.3, 0.2])
    assert p == {"p50": 0.3, "p95": pytest.approx(0.88), "p99": pytest.approx(0.976)}
    assert latency_percentiles([0.7]) == {"p50": 0.7, "p95": 0.7, "p99": 0.7}
    assert latency_percentiles([None]) == {"p50": None, "p95": None, "p99": None}


def test_each_say_gets_the_first_speech_and_mouth_opening_of_its_own_window() -> None:
    times = np.arange(10 * FPS) / FPS
    openness = np.full(len(times), 10.0)
    openness[35:55] = 60.0  # 1.40 .. 2.16 s
    openness[120:135] = 60.0  # 4.80 .. 5.36 s
    openness[210] = 60.0  # 8.40 s: one frame
    says = [
        Say("t1", "one", 1.0, 1.01),
        Say("t3", "three", 8.0, 8.01),  # out of order: sorted by when issued
        Say("t2", "two", 4.0, 4.01),
    ]
    speech = [Span(0.5, 0.3), Span(1.3, 1.0), Span(4.9, 0.5), Span(9.5, 0.2)]
    turns = measure_turns(says, speech, times, openness, end=9.0)
    assert [t.say.turn_id for t in turns] == ["t1", "t2", "t3"]
    # before the first say: no turn's; 9.5 s: after the session's end
    assert [t.speech_latency for t in turns] == pytest.approx([0.3, 0.9, None])
    assert [t.mouth_latency for t in turns] == pytest.approx([0.4, 0.8, 0.4])


def test_the_mouth_counts_from_its_rest_level_before_the_turn() -> None:
    times = np.arange(6 * FPS) / FPS
    openness = np.full(len(times), 10.0)
    openness[:50] = 40.0  # half open until 2.0 s, the say at 1.5 s: it rests at 40 there
    openness[60] = 45.0  # 2.4 s: above the session's closed mouth, not above its rest
    openness[75:80] = 60.0  # from 3.0 s: rest 40 + 20 % of the range 10..60
    [turn] = measure_turns([Say("t", "x", 1.5, 1.5)], [], times, openness, end=6.0)
    assert turn.mouth_latency == pytest.approx(1.5)
    assert turn.speech_latency is None


def fed(speech_at: float) -> MediaQa:
    """4 s of a moving picture, silence then a tone from ``speech_at``."""
    qa = MediaQa(lipsync=False)
    for i in range(4 * FPS):
        frame = np.full((48, 64), 100, dtype=np.uint8)
        frame[10:20, i % 50 : i % 50 + 10] = 220
        qa.feed_video(frame, i / FPS)
    n = np.arange(4 * RATE)
    pcm = (0.1 * np.sin(2 * np.pi * 440 * n / RATE)).astype(np.float32)
    pcm[: round(speech_at * RATE)] = 0.0
    for i in range(0, len(n), 960):
        qa.feed_audio(pcm[None, i : i + 960], i / RATE, RATE)
    return qa


def _live(ttff: float, say_at: float = 0.5) -> LiveResult:
    return LiveResult("s1", {"total": ttff}, [Say("t1", "hi", say_at, say_at)], NetworkResult())


def test_live_checks_time_to_first_frame_and_say_to_speech() -> None:
    d = fed(speech_at=1.0).report(live=_live(ttff=0.8)).to_dict()
    checks = {c["name"]: c for c in d["checks"]}
    assert checks["start.ttff_s"] == {
        "name": "start.ttff_s",
        "value": 0.8,
        "limit": "<= 3.0",
        "ok": True,
    }
    assert checks["turns.say_to_speech_s"]["value"] == pytest.approx(0.5, abs=0.011)
    assert d["verdict"] == "pass"
    assert d["turns"]["items"][0]["speech_latency_s"] == pytest.approx(0.5, abs=0.011)
    assert d["start"] == {"session_id": "s1", "total": 0.8}

    slow = fed(speech_at=3.2).report(live=_live(ttff=3.5)).to_dict()
    failed = {c["name"] for c in slow["checks"] if not c["ok"]}
    assert failed == {"start.ttff_s", "turns.say_to_speech_s"}  # 3.5 s > 3; 2.7 s > 2.5


def test_a_turn_never_heard_breaches_say_to_speech_and_limits_come_from_toml() -> None:
    silent = fed(speech_at=9.0).report(live=_live(ttff=0.5)).to_dict()
    check = next(c for c in silent["checks"] if c["name"] == "turns.say_to_speech_s")
    assert check == {"name": "turns.say_to_speech_s", "value": None, "limit": "<= 2.5", "ok": False}

    lenient = MediaQa(Thresholds(max_say_to_speech_s=None, max_ttff_s=10.0))
    names = {c.name for c in lenient.report(live=_live(ttff=5.0)).checks}
    assert "turns.say_to_speech_s" not in names and "start.ttff_s" in names


def test_say_times_go_on_the_presentation_time_line_the_speech_is_measured_on() -> None:
    # The A/V clock anchors audio on its first frame's transit: presentation runs behind
    # arrival by that frame's excess (40 ms here). A say issued on the arrival time line read
    # that as latency (+21..+72 ms against the emulator's truth).
    origin = 100.0
    stats = SimpleNamespace(
        video=SimpleNamespace(codec="H264"), audio=SimpleNamespace(codec="opus"), selected_pair=None
    )
    session = SimpleNamespace(
        session_id="s1",
        clock=SimpleNamespace(origin=origin),
        timings=SimpleNamespace(as_dict=lambda: {"total": 0.5}),
        stats=lambda: stats,
    )
    live = LiveQa(session)
    for i in range(100):  # 2 s of 20 ms frames, each presented 40 ms after it arrived
        at = 0.5 + i * 0.02
        pcm = np.zeros((960, 1), np.float32)
        live._on_audio(AudioFrame(pcm, RATE, at + 0.040, "rtcp-sr", origin + at, i))
    live._says.append(_SayCall("t1", "hi", origin + 1.0, origin + 1.01))
    _, result = live._live_result()
    [say] = result.says
    assert say.issued == pytest.approx(1.040) and say.answered == pytest.approx(1.050)
