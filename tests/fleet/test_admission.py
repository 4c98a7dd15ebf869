"""Admission by measured cost: where a job goes, when it waits, what the load says."""

from __future__ import annotations

from typing import Any

import pytest

from avatar_rtc.errors import ConfigurationError
from avatar_rtc.fleet.admission import (
    DEFAULT_LIMIT,
    HOLD,
    PACED_RECORD_COST,
    PROCESS_COST,
    SESSION_COST,
    Admission,
    Booking,
    costs_for,
)
from avatar_rtc.fleet.jobs import JOB_KINDS, RECORD_READ_INTERVAL, FleetJob, JobKind
from avatar_rtc.fleet.pool import SessionPool
from avatar_rtc.fleet.process_cpu import WINDOW
from avatar_rtc.fleet.ray_engine import RayEngine
from avatar_rtc.options import SessionOptions


def place(admission: Admission, kind: JobKind, n: int = 1) -> list[Booking | None]:
    return [admission.place(kind) for _ in range(n)]


def where(bookings: list[Booking | None]) -> list[int | None]:
    """The process of each booking (None: no room)."""
    return [None if b is None else b.process for b in bookings]


def test_every_job_kind_has_a_measured_cost_and_the_limit_is_80_percent() -> None:
    assert set(SESSION_COST) == set(JOB_KINDS)
    assert all(0 < cost < 1 for cost in SESSION_COST.values())
    assert DEFAULT_LIMIT == 0.8


def test_jobs_go_to_the_least_loaded_process_until_the_limit() -> None:
    admission = Admission(2, limit=0.8, costs={"decode": 0.3})
    bookings = place(admission, "decode", 4)
    assert where(bookings) == [0, 1, 0, 1]
    # 0.6 booked on each: one more 0.3 would pass 0.8 on both
    assert admission.place("decode") is None
    load = admission.load(queued=3)
    assert load.per_process == pytest.approx((0.6, 0.6))
    assert (load.running, load.queued) == (4, 3)
    assert load.fraction == pytest.approx(0.6)
    ended = bookings[1]
    assert ended is not None
    admission.release(ended)  # (no measure: nothing to take off but its cost)
    assert where(place(admission, "decode")) == [1]


def test_a_process_that_is_gone_takes_no_job() -> None:
    admission = Admission(2, limit=0.8, costs={"decode": 0.3})
    first = admission.place("decode")
    assert first is not None and first.process == 0
    admission.release(first)
    admission.retire(1)  # gone: idle, it sorted first for every job after
    assert where(place(admission, "decode", 3)) == [0, 0, None]


def test_an_idle_process_takes_a_job_costing_more_than_the_limit() -> None:
    admission = Admission(1, limit=0.5, costs={"encode-record": 0.9})
    (booking,) = place(admission, "encode-record")
    assert booking is not None and booking.process == 0  # else it could never run
    assert admission.place("encode-record") is None
    admission.release(booking)
    assert admission.load().per_process == (0.0,)


def test_kinds_are_booked_at_their_own_cost() -> None:
    admission = Admission(1, limit=1.0, costs={"copy-record": 0.1, "qa": 0.5})
    assert where(place(admission, "copy-record", 5)) == [0] * 5
    (qa,) = place(admission, "qa")
    assert qa is not None and qa.process == 0  # 0.5 + 0.5 fits exactly
    assert admission.place("copy-record") is None
    admission.release(qa)
    assert admission.load().per_process == pytest.approx((0.5,))


@pytest.mark.parametrize("limit", [0.0, 1.5])
def test_a_limit_outside_0_1_is_refused(limit: float) -> None:
    with pytest.raises(ConfigurationError, match="limit"):
        Admission(1, limit=limit)


@pytest.mark.parametrize(
    ("costs", "message"),
    [
        ({"copy_record": 0.01}, "job kinds are"),  # a typo: its default was kept, silently
        ({"decode": -1.0}, "finite number >= 0"),  # booked negative load: nothing was refused
        ({"decode": float("nan")}, "finite number >= 0"),
        ({"qa": float("inf")}, "finite number >= 0"),
    ],
)
def test_costs_that_are_no_job_kinds_costs_are_refused(costs: Any, message: str) -> None:
    for make in (lambda: Admission(1, costs=costs), lambda: RayEngine(costs=costs)):
        with pytest.raises(ConfigurationError, match=message):
            make()
    with pytest.raises(ConfigurationError, match=message):
        SessionPool(1, costs=costs)


def test_a_pool_of_no_processes_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="processes"):
        SessionPool(0)  # (took one per core)


def test_a_job_of_endless_duration_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="finite"):
        FleetJob(0, "decode", SessionOptions(), duration=float("inf"))


def test_jobs_of_no_cost_still_spread_over_the_processes() -> None:
    admission = Admission(3, costs={"decode": 0.0})
    assert where(place(admission, "decode", 6)) == [0, 1, 2, 0, 1, 2]


def test_a_ray_task_books_its_process_share_too_a_pool_session_only_its_own() -> None:
    # A Ray task serves one session from a worker process of its own; a pool process serves many.
    engine = RayEngine(limit=0.8, costs={"decode": 0.04})  # no Ray needed until start()
    assert engine.task_cpus("decode") == pytest.approx((PROCESS_COST + 0.04) / 0.8)
    assert int(2 / engine.task_cpus("decode")) == 22  # decode tasks at once on 2 CPUs
    admission = Admission(2, limit=0.8, costs={"decode": 0.04})
    assert sum(admission.place("decode") is not None for _ in range(50)) == 40
    # A caller's own figure for the process's share, as for the sessions' costs.
    own = RayEngine(limit=0.8, costs={"decode": 0.04}, process_cost=0.0)
    assert own.task_cpus("decode") == pytest.approx(0.04 / 0.8)
    with pytest.raises(ConfigurationError):
        RayEngine(process_cost=-0.01)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_process_measured_busier_than_its_jobs_costs_is_booked_at_its_measure() -> None:
    clock = FakeClock()
    admission = Admission(2, limit=0.8, costs={"decode": 0.1}, clock=clock)
    assert where(place(admission, "decode", 4)) == [0, 1, 0, 1]  # 0.2 booked on each
    clock.now += HOLD  # connected: their costs are in the measurements now
    admission.measured(0, 0.75)  # a slow day: 0.375 a session
    admission.measured(1, 0.15)  # under its costs: the costs count
    load = admission.load()
    assert load.per_process == pytest.approx((0.75, 0.2))
    assert load.measured == (0.75, 0.15)
    assert load.to_dict()["measured"] == [0.75, 0.15]
    # process 0 has no room for another 0.1; process 1 takes jobs until 0.8
    assert where(place(admission, "decode", 7)) == [1, 1, 1, 1, 1, 1, None]
    assert admission.load().per_process == pytest.approx((0.75, 0.8))


def test_a_job_just_taken_counts_on_top_of_the_measure_until_the_hold_ends() -> None:
    clock = FakeClock()
    admission = Admission(1, limit=0.8, costs={"copy-record": 0.3}, clock=clock)
    assert where(place(admission, "copy-record")) == [0]
    admission.measured(0, 0.35)  # its start-up, not yet its steady use
    assert admission.load().per_process == pytest.approx((0.65,))  # 0.35 + 0.3 held
    assert admission.place("copy-record") is None  # 0.95 > 0.8
    clock.now += HOLD
    assert admission.load().per_process == pytest.approx((0.35,))
    assert where(place(admission, "copy-record")) == [0]  # 0.35 + 0.3 fits
    assert admission.load().per_process == pytest.approx((0.65,))  # the new one is held


def test_an_idle_process_is_not_held_back_by_its_last_measure() -> None:
    clock = FakeClock()
    admission = Admission(1, limit=0.8, costs={"qa": 0.2}, clock=clock)
    (booking,) = place(admission, "qa")
    assert booking is not None
    admission.measured(0, 0.9)  # measured while the job ran
    admission.release(booking)
    assert admission.load().per_process == (0.0,)
    assert where(place(admission, "qa")) == [0]


def test_without_a_measure_the_costs_alone_are_booked() -> None:
    admission = Admission(1, limit=0.8, costs={"decode": 0.3})
    assert where(place(admission, "decode", 3)) == [0, 0, None]
    admission.measured(0, None)
    assert admission.load().per_process == pytest.approx((0.6,))
    assert admission.load().measured == (None,)


def three_jobs_measured(kind: JobKind, cores: float) -> tuple[FakeClock, Admission, list[Booking]]:
    """A process with three jobs costing 0.2 each, connected, then measured at ``cores``."""
    clock = FakeClock()
    admission = Admission(1, limit=0.8, costs={kind: 0.2}, clock=clock)
    bookings = [b for b in place(admission, kind, 3) if b is not None]
    assert len(bookings) == 3
    clock.now += HOLD
    admission.measured(0, cores)
    return clock, admission, bookings


def test_a_job_just_ended_is_taken_off_the_measure_for_what_it_ran_of_its_window() -> None:
    clock, admission, (first, _, _) = three_jobs_measured("decode", 0.75)  # more than 0.6
    assert admission.place("decode") is None  # 0.75 + 0.2 > 0.8
    admission.release(first)  # it ran through the whole window of that measure
    # the measure split by cost: the two running weigh 0.4 of the 0.6 it held
    assert admission.load().per_process == pytest.approx((0.5,))
    (fourth,) = place(admission, "decode")  # it need not wait for the next measure
    assert fourth is not None
    clock.now += 1.0
    admission.release(fourth)  # it failed after a second
    admission.measured(0, 0.7)  # of this measure's 3 s the first one ran 2, the fourth 1
    steady, gone = 0.4, 0.2 * 2 / 3 + 0.2 * 1 / 3
    assert admission.load().per_process == pytest.approx((0.7 * steady / (steady + gone),))
    (fifth,) = place(admission, "decode")  # held: its part of the measure and its cost
    assert fifth is not None
    assert admission.load().per_process == pytest.approx((0.7 * 0.6 / (0.6 + gone) + 0.2,))
    admission.release(fifth)
    clock.now += WINDOW
    admission.measured(0, 0.5)  # a window past all three: the measure of the two running alone
    assert admission.load().per_process == pytest.approx((0.5,))


def test_a_job_never_run_takes_nothing_off_and_the_running_jobs_costs_stay_the_floor() -> None:
    _, admission, (first, second, _) = three_jobs_measured("copy-record", 0.7)
    admission.release(first, ran=False)  # its worker was gone: it never started
    assert admission.load().per_process == pytest.approx((0.7,))
    admission.release(second)
    assert admission.load().per_process == pytest.approx((0.35,))  # 0.7 * 0.2 / 0.4
    admission.measured(0, 0.3)  # 0.3 * 0.2 / 0.4: less than the running job's cost
    assert admission.load().per_process == pytest.approx((0.2,))


def test_ended_jobs_are_forgotten_without_a_measure() -> None:
    clock = FakeClock()
    admission = Admission(1, costs={"decode": 0.1}, clock=clock)
    for _ in range(1000):  # a pool that measures nothing (measure=False) ends many jobs
        booking = admission.place("decode")
        assert booking is not None
        admission.release(booking)
        clock.now += 0.1
    assert len(admission._ended[0]) <= HOLD / 0.1 + 1  # those of the last HOLD seconds


def _jobs(kind: JobKind, *intervals: float) -> list[FleetJob]:
    return [
        FleetJob(i, kind, SessionOptions(read_interval=interval), out_dir="out")
        for i, interval in enumerate(intervals)
    ]


def test_paced_recordings_are_admitted_at_their_own_cost() -> None:
    paced = _jobs("copy-record", RECORD_READ_INTERVAL, 0.2)
    assert costs_for(paced) == {"copy-record": PACED_RECORD_COST}
    assert SESSION_COST["copy-record"] > PACED_RECORD_COST
    # 64 at once on a core against 40 at the unpaced cost (128 on the 2-core bench machine).
    admission = Admission(1, costs=costs_for(paced))
    assert len([b for b in place(admission, "copy-record", 200) if b is not None]) == 64
    # One job reading at each packet (or faster than the fleet's interval): the kind's cost.
    assert costs_for(_jobs("copy-record", RECORD_READ_INTERVAL, 0.0)) == {}
    assert costs_for(_jobs("copy-record", 0.05)) == {}
    assert costs_for(_jobs("qa", RECORD_READ_INTERVAL)) == {}
    assert costs_for([]) == {}
