"""The job description and its result: checked on creation, plain data across processes."""

from __future__ import annotations

import pickle

import pytest

from avatar_rtc.errors import ConfigurationError
from avatar_rtc.fleet.jobs import FleetJob, JobResult
from avatar_rtc.fleet.runner import FrameWatch
from avatar_rtc.options import SessionOptions
from avatar_rtc.redact import Secret, redact


def test_a_job_survives_pickling_with_its_secret_masked() -> None:
    job = FleetJob(
        3,
        "qa",
        SessionOptions(api_url="http://127.0.0.1:1", ks=Secret("a-fleet-ks")),
        out_dir="/tmp/x",
    )
    copy = pickle.loads(pickle.dumps(job))
    assert copy == job and copy.name == "session-003"
    assert copy.options.ks is not None and copy.options.ks.reveal() == "a-fleet-ks"
    assert "a-fleet-ks" not in repr(copy)
    assert "a-fleet-ks" not in redact(f"job {copy.options.ks.reveal()}")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "transcode"}, "job kind"),
        ({"kind": "copy-record"}, "needs out_dir"),
        ({"kind": "decode", "duration": 0.0}, "duration"),
        ({"kind": "decode", "duration": 2.0, "warmup": 2.0}, "warmup"),
    ],
)
def test_inconsistent_jobs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        FleetJob(0, options=SessionOptions(), **kwargs)  # type: ignore[arg-type]


def test_a_result_round_trips_through_its_dict() -> None:
    result = JobResult(1, "decode", ok=True, fps=25.0, worker="host:1")
    assert JobResult.from_dict({**result.to_dict(), "unknown_later_field": 1}) == result


def test_frame_figures_fps_worst_second_and_latency() -> None:
    watch = FrameWatch(sender_epoch=100.0)
    watch.start_after(-1e9)  # count from the start
    # 3 s at 25 fps, but the second second has only 10 frames; latency 20 ms, one of 90 ms
    times = [1000 + k / 25 for k in range(25)] + [1001 + k / 10 for k in range(10)]
    times += [1002 + k / 25 for k in range(26)]
    for t in times:
        watch.add(t, round((t - 100.0 - 0.02) * 90000))
    watch.add(1003.05, round((1003.05 - 100.0 - 0.09) * 90000))
    result = JobResult(0, "decode")
    watch.report(result)
    assert result.video_frames == len(times) + 1
    assert result.worst_second_fps == 10.0
    assert result.fps == pytest.approx((len(times)) / 3.05, rel=0.01)
    assert result.latency_p95_ms == pytest.approx(20.0, abs=0.5)
