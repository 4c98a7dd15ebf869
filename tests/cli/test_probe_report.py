"""The probe's JSON: the session's ``stats().to_dict()`` (one serialiser) plus its measures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from avatar_rtc.cli.probe_report import SILENCE_DB, AudioLevel, VideoCount, build_report
from avatar_rtc.errors import NetworkError
from avatar_rtc.media.frames import AudioFrame
from avatar_rtc.session_stats import SCHEMA_VERSION, SessionState, SessionStats, SessionTimings


def _stats(timings: SessionTimings | None = None) -> SessionStats:
    """The stats of a session that never started (what a failed connect leaves)."""
    from avatar_rtc.session import AvatarSession

    stats = AvatarSession().stats()
    if timings is None:
        return stats
    return SessionStats(**{**vars(stats), "timings": timings})


def _frame(level: float, seconds: float = 0.02) -> AudioFrame:
    """A square wave of amplitude ``level`` (full scale 1.0): its RMS is ``level``."""
    samples = int(48000 * seconds)
    data = np.full((samples, 1), int(level * 32767), dtype=np.int16)
    data[::2] *= -1
    return AudioFrame(
        data=data, sample_rate=48000, presentation_time=0.0, clock_source="arrival",
        arrival_time=0.0, index=0,
    )  # fmt: skip


def test_to_dict_is_json_with_a_schema_version() -> None:
    stats = _stats()
    data = stats.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert json.loads(json.dumps(data)) == data  # plain JSON: enums, tuples, dataclasses
    assert data["state"] == SessionState.NEW.value
    assert set(data["timings"]) == {*SessionTimings.PHASES, "total"}
    assert data["video"]["kind"] == "video" and data["stream_drops"] == 0
    fields = {name for name in SessionStats.__dataclass_fields__}
    assert set(data) == fields | {"schema_version", "stream_drops"}


def test_the_probe_report_is_the_stats_dict_plus_a_probe_section() -> None:
    timings = SessionTimings(session=0.1, offer_answer=0.2)
    stats = _stats(timings)
    error = NetworkError("ICE: nothing answered")
    report = build_report(stats, "service", VideoCount(), AudioLevel(), 0.0, error)
    assert {k: v for k, v in report.items() if k != "probe"} == stats.to_dict()
    probe = report["probe"]
    assert probe["error"] == {
        "type": "NetworkError",
        "message": "ICE: nothing answered",
        "exit_code": NetworkError.exit_code,
    }
    assert probe["phases_reached"] == ["session", "offer_answer"]
    assert probe["failed_phase"] == "ice_dtls"
    ok = build_report(stats, "service", VideoCount(), AudioLevel(), 2.5)["probe"]
    assert ok["error"] is None and ok["failed_phase"] is None and ok["window_seconds"] == 2.5


def test_pending_phase_skips_the_session_in_bare_whep() -> None:
    assert SessionTimings().pending() == "session"
    assert SessionTimings().pending(control_api=False) == "offer_answer"
    done = SessionTimings(*(0.1,) * 6)
    assert done.pending() is None and done.reached() == SessionTimings.PHASES


def test_level_is_the_rms_of_the_whole_run_not_the_last_chunk() -> None:
    level = AudioLevel()
    assert level.level_db == SILENCE_DB
    for _ in range(50):  # 1 s at -6 dBFS (RMS 0.5)
        level.add(_frame(0.5))
    for _ in range(150):  # then 3 s of silence
        level.add(_frame(0.0))
    assert level.seconds == pytest.approx(4.0)
    # the energy of 1 s over 4 s: 6 dB lower; the last chunk alone would say -120
    assert level.level_db == pytest.approx(20 * math.log10(0.5) - 10 * math.log10(4), abs=0.05)
    assert level.peak_db == pytest.approx(20 * math.log10(0.5), abs=0.05)
