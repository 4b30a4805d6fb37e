"""service.idle: work registered with call_when_idle runs once the loop has nothing else to do.

Checked by the order of events (never by timing): ready callbacks and pending I/O come first,
the idle work next, timers that are not due yet after it.
"""
from __future__ import annotations

import asyncio
import socket

import pytest

from service import idle


def test_idle_work_runs_after_ready_callbacks_and_before_a_later_timer():
    log: list[str] = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(30, log.append, "timer")  # far away: the loop would wait for it
        done = loop.create_future()

        def step(i: int) -> None:
            log.append(f"step{i}")
            if i < 5:
                loop.call_soon(step, i + 1)

        assert idle.call_when_idle(lambda: (log.append("idle"), done.set_result(None)))
        loop.call_soon(step, 1)
        await done

    idle.run(main())
    assert log == ["step1", "step2", "step3", "step4", "step5", "idle"]


def test_pending_io_is_handled_before_idle_work():
    log: list[str] = []

    async def main():
        loop = asyncio.get_running_loop()
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        done = loop.create_future()
        loop.add_reader(reader.fileno(), lambda: log.append(f"read {reader.recv(10)!r}"))
        writer.send(b"x")
        assert idle.call_when_idle(lambda: (log.append("idle"), done.set_result(None)))
        await done
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()

    idle.run(main())
    assert log == ["read b'x'", "idle"]


def test_the_same_key_runs_once_and_failures_reach_the_exception_handler():
    log: list[str] = []
    reported: list[BaseException] = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
        done = loop.create_future()

        def fail():
            raise RuntimeError("idle work failed")

        for i in range(3):
            idle.call_when_idle(lambda i=i: log.append(f"work{i}"), key="same")
        idle.call_when_idle(fail)
        idle.call_when_idle(lambda: done.set_result(None))
        await done

    idle.run(main())
    assert log == ["work2"]
    assert [str(e) for e in reported] == ["idle work failed"]


def test_other_loops_say_no():
    async def main():
        return idle.call_when_idle(lambda: pytest.fail("must not run"))

    assert asyncio.run(main()) is False
