"""A pytest plugin that keeps the ``slow`` mark honest: a test whose call takes longer than
``slow_s`` seconds (pyproject.toml's ini option, 5 by default) carries the mark itself, on the
test or its module's ``pytestmark``, so ``-m "not slow"`` stays quick and a renamed test keeps its
mark. One without it is listed at the end of the run, and fails the run beyond ``3 * slow_s``
(a margin for a loaded machine: only a test that belongs among the slow ones fails it).
"""
from __future__ import annotations

import pytest

MARGIN = 3.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("slow_s", "seconds of a test's call beyond which it must be marked slow", default="5")


class SlowMarks:
    """Notes each unmarked test over ``slow_s``; reports them and sets the run's outcome."""

    def __init__(self, slow_s: float):
        self.slow_s = slow_s
        self.unmarked: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.duration > self.slow_s and "slow" not in report.keywords:
            self.unmarked[report.nodeid] = report.duration

    @property
    def failing(self) -> list[str]:
        return [nodeid for nodeid, seconds in self.unmarked.items() if seconds > MARGIN * self.slow_s]

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.failing and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.unmarked:
            return
        terminalreporter.section(f"tests over {self.slow_s:g} s without the slow mark")
        for nodeid, seconds in sorted(self.unmarked.items(), key=lambda item: -item[1]):
            verdict = f"over {MARGIN:g}x: fails the run" if nodeid in self.failing else "mark it slow if it stays so"
            terminalreporter.line(f"{seconds:6.1f} s  {nodeid}  ({verdict})")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SlowMarks(float(config.getini("slow_s"))), "slow-marks")
