"""The workers' CPU as admission measures it: /proc's figures, over a sliding window."""

from __future__ import annotations

import os
import time

import pytest

from avatar_rtc.fleet.process_cpu import CpuMeter, cpu_seconds


def test_a_process_cpu_counts_what_its_threads_burned() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None
    start = time.thread_time()
    while time.thread_time() - start < 0.2:  # CPU time, not wall time: no clock to race
        pass
    after = cpu_seconds(os.getpid())
    assert after is not None
    assert after - before >= 0.2 - 0.03  # /proc counts in ticks (10 ms here)


def test_a_process_that_is_gone_reads_none() -> None:
    assert cpu_seconds(2**22 + 1) is None  # above Linux's largest pid


class Fakes:
    def __init__(self) -> None:
        self.now = 0.0
        self.cpu: float | None = 0.0

    def clock(self) -> float:
        return self.now

    def read(self, pid: int) -> float | None:
        return self.cpu

    def tick(self, seconds: float, cores: float) -> None:
        self.now += seconds
        assert self.cpu is not None
        self.cpu += seconds * cores


def test_the_meter_gives_the_cores_used_over_its_window() -> None:
    fakes = Fakes()
    meter = CpuMeter(3.0, clock=fakes.clock, read=fakes.read)
    assert meter.sample(1) is None  # one sample: no span yet
    fakes.tick(1.0, 0.5)
    assert meter.sample(1) == pytest.approx(0.5)
    for _ in range(3):
        fakes.tick(1.0, 0.2)
        meter.sample(1)
    # the window holds the last 3 s: 0.2 cores throughout
    assert meter.sample(1) == pytest.approx(0.2)
    fakes.tick(1.0, 0.8)
    assert meter.sample(1) == pytest.approx((0.2 + 0.2 + 0.8) / 3)


def test_a_process_that_cannot_be_read_any_more_starts_afresh() -> None:
    fakes = Fakes()
    meter = CpuMeter(3.0, clock=fakes.clock, read=fakes.read)
    meter.sample(1)
    fakes.tick(1.0, 0.5)
    fakes.cpu = None
    assert meter.sample(1) is None
    fakes.cpu = 10.0  # (a new process under the same pid: its own count)
    assert meter.sample(1) is None
    fakes.tick(1.0, 0.25)
    assert meter.sample(1) == pytest.approx(0.25)
