"""The playout stage: frames that came late play out evenly (W3C freezes gone), in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from avatar_rtc.media.freezes import FreezeMeter
from avatar_rtc.media.playout import NEW_CLOCK_RUN, PlayoutDelay, PlayoutSource
from avatar_rtc.rtc.encoded_frame import EncodedFrame, MediaKind

FPS = 25
RATE = 90000


def frame(index: int, arrival: float) -> EncodedFrame:
    return EncodedFrame("video", "H264", b"", index * RATE // FPS, RATE, index == 0,
                        index / FPS, "arrival", arrival, index)  # fmt: skip


def test_an_even_stream_is_not_delayed() -> None:
    playout = PlayoutDelay(max_delay=0.3)
    for i in range(100):
        assert playout.due(i / FPS, 10.0 + i / FPS) == pytest.approx(10.0 + i / FPS)
    assert playout.delay == pytest.approx(0.0)


def test_the_delay_covers_the_recent_lateness_up_to_the_cap() -> None:
    playout = PlayoutDelay(max_delay=0.3, window=5.0)
    for i in range(100):  # every tenth frame 120 ms late
        playout.due(i / FPS, 10.0 + i / FPS + (0.12 if i % 10 == 0 else 0.0))
    assert playout.delay == pytest.approx(0.12)
    # an on-time frame now plays 120 ms after it came
    assert playout.due(100 / FPS, 10.0 + 100 / FPS) == pytest.approx(10.0 + 100 / FPS + 0.12)
    capped = PlayoutDelay(max_delay=0.1)
    for i in range(100):
        capped.due(i / FPS, 10.0 + i / FPS + (0.5 if i % 10 == 0 else 0.0))
    assert capped.delay == pytest.approx(0.1)


def test_old_lateness_leaves_the_window_and_a_new_rtp_clock_starts_over() -> None:
    playout = PlayoutDelay(max_delay=0.3, window=2.0)
    playout.due(0.0, 10.2)  # late, then on time for 3 s
    for i in range(1, 76):
        playout.due(i / FPS, 10.0 + i / FPS)
    assert playout.delay == pytest.approx(0.0)
    # a new sender: its RTP time starts at 1000 s; no delay from the old history
    assert playout.due(1000.0, 20.0) == pytest.approx(20.0)
    assert playout.delay == 0.0


def test_an_outages_backlog_plays_at_once_and_leaves_no_lag() -> None:
    """A 2 s outage whose NACKed tail comes back in one burst with the first fresh frame:
    everything is due at once, and the frames after it are not held (they were kept 2 s
    behind for good when the backlog set the base, or its lateness the delay)."""
    playout = PlayoutDelay(max_delay=0.5)
    for i in range(100):
        assert playout.due(i / FPS, 10.0 + i / FPS) == pytest.approx(10.0 + i / FPS)
    back = 10.0 + 150 / FPS  # frames 100..149 were lost, then retransmitted with 150
    for k, i in enumerate(range(100, 151)):
        arrival = back + 0.0005 * k
        assert playout.due(i / FPS, arrival) == pytest.approx(arrival)
    for i in range(151, 300):
        assert playout.due(i / FPS, 10.0 + i / FPS) == pytest.approx(10.0 + i / FPS)
    assert playout.delay == pytest.approx(0.0)


def test_an_outages_tail_in_two_bursts_does_not_raise_the_delay() -> None:
    """The tail comes in two bursts (the last frames of the outage were asked for when the
    first fresh packet showed they were missing, a round trip later): those frames are late,
    but under the cap, and not hurried. They are the backlog's, not the network's lateness:
    the delay stays as it was (it rose to 35 ms for 5 s, measured, when they counted)."""
    playout = PlayoutDelay(max_delay=0.5)
    for i in range(100):
        playout.due(i / FPS, 10.0 + i / FPS)
    back = 10.0 + 150 / FPS  # frames 100..149 lost: 100..146 come back at once
    for k, i in enumerate(range(100, 147)):
        arrival = back + 0.0005 * k
        assert playout.due(i / FPS, arrival) == pytest.approx(arrival)
    for k, i in enumerate(range(147, 150)):  # the rest, 27 ms later: 0.1 s late and less
        arrival = back + 0.05 + 0.0005 * k
        assert playout.due(i / FPS, arrival) <= arrival  # at once
    for i in range(150, 300):  # fresh frames, on time: not held
        assert playout.due(i / FPS, 10.0 + i / FPS) == pytest.approx(10.0 + i / FPS)
    assert playout.delay == pytest.approx(0.0)


def test_a_new_rtp_clock_that_makes_frames_late_starts_over_after_a_few() -> None:
    playout = PlayoutDelay(max_delay=0.3)
    for i in range(100):
        playout.due(i / FPS, 10.0 + i / FPS)
    # A new sender whose RTP time is 5 s behind: at once (too late to cover) for a few
    # frames, then a new history, on time again.
    for i in range(100, 100 + NEW_CLOCK_RUN):
        arrival = 10.0 + i / FPS
        assert playout.due(i / FPS - 5.0, arrival) == pytest.approx(arrival)
    for i in range(100 + NEW_CLOCK_RUN, 200):
        arrival = 10.0 + i / FPS
        assert playout.due(i / FPS - 5.0, arrival) == pytest.approx(arrival)
    assert playout.delay == pytest.approx(0.0)
    # The new clock is the reference now: lateness on it is covered again.
    for i in range(200, 300):
        playout.due(i / FPS - 5.0, 10.0 + i / FPS + (0.12 if i % 10 == 0 else 0.0))
    assert playout.due(300 / FPS - 5.0, 22.0) == pytest.approx(22.0 + 0.12)


class FakeSource:
    """Delivers frames on the loop at given arrival times."""

    kind: MediaKind = "video"
    frames_released = 1

    def __init__(self) -> None:
        self.callbacks: list[Callable[[EncodedFrame], None]] = []
        self.keyframes = 0

    def subscribe(self, callback: Callable[[EncodedFrame], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def request_keyframe(self) -> None:
        self.keyframes += 1


@pytest.mark.slow
async def test_late_bursts_play_out_without_freezes_in_order() -> None:
    source = FakeSource()
    playout = PlayoutSource(source, max_delay=0.4)
    delivered: list[tuple[int, float]] = []
    remove = playout.subscribe(lambda f: delivered.append((f.index, time.monotonic())))
    arrived = FreezeMeter()
    loop = asyncio.get_running_loop()

    def _arrive(indices: list[int]) -> None:
        now = time.monotonic()
        for i in indices:
            arrived.add(now)
            for callback in list(source.callbacks):
                callback(frame(i, now))

    t0 = time.monotonic() + 0.05
    count, due_at = 100, t0
    bursts: dict[float, list[int]] = {}  # arrival time -> frames, in order (as released)
    for i in range(count):
        # every 20th frame waits 250 ms for a retransmission; those behind it come with it
        due_at = max(due_at, t0 + i / FPS + (0.25 if i % 20 == 10 else 0.0))
        bursts.setdefault(due_at, []).append(i)
    for at, indices in bursts.items():
        loop.call_at(loop.time() + (at - time.monotonic()), _arrive, indices)

    while len(delivered) < count:
        await asyncio.sleep(0.05)
        assert time.monotonic() < t0 + 30, "frames held for good"
    played = FreezeMeter()
    for _, t in delivered:
        played.add(t)
    print(f"\nfreezes on arrival {arrived.count} ({arrived.total_duration:.2f} s), "
          f"played out {played.count} ({played.total_duration:.2f} s), "
          f"delay {playout.playout.delay:.3f} s")  # fmt: skip
    assert [i for i, _ in delivered] == list(range(count))
    assert arrived.count >= 3  # the stream as it came had freezes
    assert played.count <= 1 and played.count < arrived.count
    assert 0.2 <= playout.playout.delay <= 0.4
    remove()
    assert source.callbacks == []
    playout.request_keyframe()
    assert source.keyframes == 1
