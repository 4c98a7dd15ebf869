"""Admission by measured cost: where a job goes, when it waits, what the load says."""

from __future__ import annotations

import pytest

from avatar_rtc.fleet.admission import (
    DEFAULT_LIMIT,
    HOLD,
    PROCESS_COST,
    SESSION_COST,
    Admission,
)
from avatar_rtc.fleet.jobs import JOB_KINDS
from avatar_rtc.fleet.ray_engine import RayEngine


def test_every_job_kind_has_a_measured_cost_and_the_limit_is_80_percent() -> None:
    assert set(SESSION_COST) == set(JOB_KINDS)
    assert all(0 < cost < 1 for cost in SESSION_COST.values())
    assert DEFAULT_LIMIT == 0.8


def test_jobs_go_to_the_least_loaded_process_until_the_limit() -> None:
    admission = Admission(2, limit=0.8, costs={"decode": 0.3})
    assert [admission.place("decode") for _ in range(4)] == [0, 1, 0, 1]
    # 0.6 booked on each: one more 0.3 would pass 0.8 on both
    assert admission.place("decode") is None
    load = admission.load(queued=3)
    assert load.per_process == pytest.approx((0.6, 0.6))
    assert (load.running, load.queued) == (4, 3)
    assert load.fraction == pytest.approx(0.6)
    admission.release(1, "decode")
    assert admission.place("decode") == 1


def test_an_idle_process_takes_a_job_costing_more_than_the_limit() -> None:
    admission = Admission(1, limit=0.5, costs={"encode-record": 0.9})
    assert admission.place("encode-record") == 0  # else it could never run
    assert admission.place("encode-record") is None
    admission.release(0, "encode-record")
    assert admission.load().per_process == (0.0,)


def test_kinds_are_booked_at_their_own_cost() -> None:
    admission = Admission(1, limit=1.0, costs={"copy-record": 0.1, "qa": 0.5})
    for _ in range(5):
        assert admission.place("copy-record") == 0
    assert admission.place("qa") == 0  # 0.5 + 0.5 fits exactly
    assert admission.place("copy-record") is None
    admission.release(0, "qa")
    assert admission.load().per_process == pytest.approx((0.5,))


@pytest.mark.parametrize("limit", [0.0, 1.5])
def test_a_limit_outside_0_1_is_refused(limit: float) -> None:
    with pytest.raises(ValueError, match="limit"):
        Admission(1, limit=limit)


def test_jobs_of_no_cost_still_spread_over_the_processes() -> None:
    admission = Admission(3, costs={"decode": 0.0})
    assert [admission.place("decode") for _ in range(6)] == [0, 1, 2, 0, 1, 2]


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
    with pytest.raises(ValueError):
        RayEngine(process_cost=-0.01)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_process_measured_busier_than_its_jobs_costs_is_booked_at_its_measure() -> None:
    clock = FakeClock()
    admission = Admission(2, limit=0.8, costs={"decode": 0.1}, clock=clock)
    assert [admission.place("decode") for _ in range(4)] == [0, 1, 0, 1]  # 0.2 booked on each
    clock.now += HOLD  # connected: their costs are in the measurements now
    admission.measured(0, 0.75)  # a slow day: 0.375 a session
    admission.measured(1, 0.15)  # under its costs: the costs count
    load = admission.load()
    assert load.per_process == pytest.approx((0.75, 0.2))
    assert load.measured == (0.75, 0.15)
    assert load.to_dict()["measured"] == [0.75, 0.15]
    # process 0 has no room for another 0.1; process 1 takes jobs until 0.8
    assert [admission.place("decode") for _ in range(7)] == [1, 1, 1, 1, 1, 1, None]
    assert admission.load().per_process == pytest.approx((0.75, 0.8))


def test_a_job_just_taken_counts_on_top_of_the_measure_until_the_hold_ends() -> None:
    clock = FakeClock()
    admission = Admission(1, limit=0.8, costs={"copy-record": 0.3}, clock=clock)
    assert admission.place("copy-record") == 0
    admission.measured(0, 0.35)  # its start-up, not yet its steady use
    assert admission.load().per_process == pytest.approx((0.65,))  # 0.35 + 0.3 held
    assert admission.place("copy-record") is None  # 0.95 > 0.8
    clock.now += HOLD
    assert admission.load().per_process == pytest.approx((0.35,))
    assert admission.place("copy-record") == 0  # 0.35 + 0.3 fits
    assert admission.load().per_process == pytest.approx((0.65,))  # the new one is held


def test_an_idle_process_is_not_held_back_by_its_last_measure() -> None:
    clock = FakeClock()
    admission = Admission(1, limit=0.8, costs={"qa": 0.2}, clock=clock)
    assert admission.place("qa") == 0
    admission.measured(0, 0.9)  # measured while the job ran
    admission.release(0, "qa")
    assert admission.load().per_process == (0.0,)
    assert admission.place("qa") == 0


def test_without_a_measure_the_costs_alone_are_booked() -> None:
    admission = Admission(1, limit=0.8, costs={"decode": 0.3})
    assert [admission.place("decode") for _ in range(3)] == [0, 0, None]
    admission.measured(0, None)
    assert admission.load().per_process == pytest.approx((0.6,))
    assert admission.load().measured == (None,)
