"""A pytest plugin that keeps the ``slow`` mark honest: a test whose call takes longer than
``slow_s`` seconds (ini option, 5 by default) carries the mark itself, on the test or its module's
``pytestmark``, so ``-m "not slow"`` stays quick and a renamed test keeps its mark. One without it
is listed at the end of the run, and fails the run beyond ``MARGIN * slow_s``.

A call is measured in CPU seconds, its own and those of the processes it ran and waited for
(``os.times``), not in wall time: on a quiet machine the two agree for the tests this concerns,
and on a machine shared with other work the CPU time does not grow with the load, so the check
neither misses a slow test there nor fails a quick one.
"""
from __future__ import annotations

import os

import pytest

MARGIN = 3.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("slow_s", "CPU seconds of a test's call beyond which it must be marked slow", default="5")


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class SlowMarks:
    """Measures each call, notes each unmarked test over ``slow_s``, reports them and sets the
    run's outcome."""

    def __init__(self, slow_s: float):
        self.slow_s = slow_s
        self.unmarked: dict[str, tuple[float, float]] = {}  # node id -> (CPU s, wall s)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        started = cpu_seconds()
        yield
        cpu = cpu_seconds() - started
        if cpu > self.slow_s and item.get_closest_marker("slow") is None:
            self.unmarked[item.nodeid] = (cpu, 0.0)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.nodeid in self.unmarked:
            self.unmarked[report.nodeid] = (self.unmarked[report.nodeid][0], report.duration)

    @property
    def failing(self) -> list[str]:
        return [nodeid for nodeid, (cpu, _) in self.unmarked.items() if cpu > MARGIN * self.slow_s]

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.failing and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.unmarked:
            return
        terminalreporter.section(f"tests over {self.slow_s:g} CPU seconds without the slow mark")
        for nodeid, (cpu, wall) in sorted(self.unmarked.items(), key=lambda item: -item[1][0]):
            verdict = f"over {MARGIN:g}x: fails the run" if nodeid in self.failing else "mark it slow if it stays so"
            terminalreporter.line(f"{cpu:6.1f} s CPU ({wall:.1f} s wall)  {nodeid}  ({verdict})")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SlowMarks(float(config.getini("slow_s"))), "slow-marks")
