"""The priority structure on its own: settings checks and the order batches are taken in.

No event loop, no clock: every call passes ``now``, so each case is exact.
"""
from __future__ import annotations

import pytest

from service.priority import DELAY, REJECT, LevelFull, PriorityQueue, PrioritySettings, QueuePolicy, Waiting


def item(images=1, level=0, timeout_at=None, name=""):
    w = Waiting(images, level, timeout_at)
    w.name = name
    return w


def names(batch):
    return [w.name for w in batch]


def three_levels(**policies):
    return PrioritySettings(3, 2, QueuePolicy(), {int(k[1:]): v for k, v in policies.items()})


# -- settings ------------------------------------------------------------------------------------

def test_absent_block_is_levels_off():
    s = PrioritySettings.parse({"max_batch_size": 8})
    assert not s.enabled and s.levels == (0,) and s.level_of(0) == 0 and s.level_of(7) == 0


def test_parse_reads_triton_names():
    s = PrioritySettings.parse({
        "priority_levels": 2, "default_priority_level": 2,
        "default_queue_policy": {"max_queue_size": 16, "default_timeout_microseconds": 5000,
                                 "allow_timeout_override": True, "timeout_action": "DELAY"},
        "priority_queue_policy": {"1": {"max_queue_size": 4, "default_timeout_us": 100}},
    })
    assert s.levels == (1, 2)
    assert s.policy(2) == QueuePolicy(16, 5000, True, DELAY)
    assert s.policy(1) == QueuePolicy(4, 100, False, REJECT)
    assert [s.level_of(p) for p in (0, 1, 2, 3, 99)] == [2, 1, 2, 2, 2]


@pytest.mark.parametrize("block, field, got", [
    ({"priority_levels": 2, "default_priority_level": 3}, "batching.default_priority_level", "3"),
    ({"priority_levels": 2}, "batching.default_priority_level", "0"),
    ({"priority_levels": 0, "default_priority_level": 1}, "batching.default_priority_level", "1"),
    ({"priority_levels": -1}, "batching.priority_levels", "-1"),
    ({"priority_levels": 2, "default_priority_level": 1, "priority_queue_policy": {"3": {}}},
     "batching.priority_queue_policy", "level 3"),
    ({"default_queue_policy": {"max_queue_size": -4}}, "batching.default_queue_policy.max_queue_size", "-4"),
    ({"default_queue_policy": {"default_timeout_us": -1}}, "batching.default_queue_policy.default_timeout_us", "-1"),
    ({"default_queue_policy": {"timeout_action": "DROP"}}, "batching.default_queue_policy.timeout_action", "DROP"),
    ({"default_queue_policy": {"allow_timeout_override": "yes"}},
     "batching.default_queue_policy.allow_timeout_override", "yes"),
    ({"default_queue_policy": {"max_size": 1}}, "batching.default_queue_policy.max_size", "unknown"),
    ({"priority_levels": 2, "default_priority_level": 1, "priority_queue_policy": {"x": {}}},
     "batching.priority_queue_policy", "'x'"),
])
def test_invalid_settings_name_the_field(block, field, got):
    with pytest.raises(ValueError) as err:
        PrioritySettings.parse(block)
    assert field in str(err.value) and got in str(err.value)


def test_policy_timeout_with_and_without_override():
    capped = QueuePolicy(default_timeout_us=2_000_000)
    assert capped.timeout(None) == 2.0
    assert capped.timeout(1.0) == 1.0
    assert capped.timeout(5.0) == 2.0  # cannot exceed the policy's
    free = QueuePolicy(default_timeout_us=2_000_000, allow_timeout_override=True)
    assert free.timeout(5.0) == 5.0 and free.timeout(None) == 2.0
    assert QueuePolicy().timeout(3.0) == 3.0 and QueuePolicy().timeout(None) is None


# -- order ---------------------------------------------------------------------------------------

def test_levels_off_is_one_fifo_with_whole_requests():
    q = PriorityQueue()
    for i, n in enumerate([3, 2, 4, 1]):
        q.push(item(n, name=f"r{i}"))
    assert q.images == 10 and len(q) == 4
    assert names(q.take(cap=5)) == ["r0", "r1"]  # r2 (4 images) would overfill: stop, no skipping
    assert names(q.take(cap=5)) == ["r2", "r3"]
    assert not q and q.images == 0


def test_highest_level_first_then_filling_with_lower():
    q = PriorityQueue(three_levels())
    q.push(item(2, 3, name="low-a"))
    q.push(item(2, 2, name="mid-a"))
    q.push(item(1, 1, name="high-a"))
    q.push(item(2, 3, name="low-b"))
    q.push(item(1, 1, name="high-b"))
    assert names(q.take(cap=6)) == ["high-a", "high-b", "mid-a", "low-a"]
    assert names(q.take(cap=6)) == ["low-b"]


def test_a_higher_request_arriving_later_goes_first():
    q = PriorityQueue(three_levels())
    for i in range(4):
        q.push(item(2, 3, name=f"low{i}"))
    assert names(q.take(cap=4)) == ["low0", "low1"]
    q.push(item(1, 1, name="high"))
    assert names(q.take(cap=4)) == ["high", "low2"]


def test_fits_stops_the_batch_at_an_incompatible_item():
    q = PriorityQueue(three_levels())
    q.push(item(1, 1, name="a"))
    q.push(item(1, 2, name="odd"))
    q.push(item(1, 3, name="b"))
    batch = q.take(cap=8, fits=lambda w, b: w.name != "odd")
    assert names(batch) == ["a"]
    assert names(q) == ["odd", "b"]


def test_per_level_sizes():
    q = PriorityQueue(three_levels(l1=QueuePolicy(max_queue_size=3)))
    q.push(item(2, 1))
    q.check(1, 1)
    with pytest.raises(LevelFull, match=r"priority level 1 full .*max_queue_size=3, request has 2"):
        q.check(1, 2)
    q.check(3, 1000)  # level 3 has no limit of its own
    assert q.level_images(1) == 2 and q.level_images(3) == 0


def test_reject_removes_timed_out_requests_and_returns_them():
    q = PriorityQueue(three_levels(l2=QueuePolicy(default_timeout_us=1000, timeout_action=REJECT)))
    q.push(item(1, 2, timeout_at=10.0, name="late"))
    q.push(item(1, 2, timeout_at=30.0, name="fine"))
    assert q.next_timeout() == 10.0
    assert q.expire(9.999) == []
    assert names(q.expire(10.0)) == ["late"]
    assert names(q) == ["fine"] and q.images == 1 and q.level_images(2) == 1
    assert q.next_timeout() == 30.0


def test_delay_moves_timed_out_requests_behind_their_level_but_ahead_of_lower_levels():
    q = PriorityQueue(three_levels(l1=QueuePolicy(timeout_action=DELAY), l3=QueuePolicy(timeout_action=DELAY)))
    q.push(item(1, 1, timeout_at=5.0, name="h-old"))
    q.push(item(1, 1, name="h-new"))
    q.push(item(1, 3, timeout_at=5.0, name="l-old"))
    q.push(item(1, 3, name="l-new"))
    assert q.expire(6.0) == []
    assert names(q) == ["h-new", "h-old", "l-new", "l-old"]
    assert q.next_timeout() is None
    assert names(q.take(cap=2)) == ["h-new", "h-old"]
    q.push(item(1, 3, name="l-newer"))
    assert names(q.take(cap=8)) == ["l-new", "l-newer", "l-old"]


def test_remove_from_either_fifo_keeps_counts():
    q = PriorityQueue(PrioritySettings(default_queue_policy=QueuePolicy(timeout_action=DELAY)))
    a, b = item(2, timeout_at=1.0, name="a"), item(3, name="b")
    q.push(a)
    q.push(b)
    q.expire(2.0)
    assert a.delayed
    q.remove(a)
    q.remove(b)
    assert not q and q.images == 0 and q.level_images(0) == 0


# -- config.json ---------------------------------------------------------------------------------

def test_config_json_batching_block_carries_the_priority_settings():
    from tiny_models import tiny_config

    from service.repository import spec_from_config

    block = {"max_batch_size": 8, "priority_levels": 3, "default_priority_level": 3,
             "priority_queue_policy": {"1": {"max_queue_size": 8, "timeout_action": "DELAY"}}}
    spec = spec_from_config(tiny_config("tiny", batching=block), "tiny")
    assert spec.batching.max_batch_size == 8
    assert spec.batching.priority == PrioritySettings(3, 3, QueuePolicy(), {1: QueuePolicy(8, 0, False, DELAY)})
    plain = spec_from_config(tiny_config("tiny", batching={"max_batch_size": 8}), "tiny")
    assert not plain.batching.priority.enabled


@pytest.mark.parametrize("block, message", [
    ({"priority_levels": 2, "default_priority_level": 5}, r"config.json: batching.default_priority_level: .*1..priority_levels \(2\), got 5"),
    ({"priority_levels": 1, "default_priority_level": 1, "priority_queue_policy": {"2": {}}},
     "config.json: batching.priority_queue_policy: level 2 does not exist"),
    ({"default_queue_policy": {"max_queue_size": -1}}, "config.json: batching.default_queue_policy.max_queue_size"),
    ({"priority": {"priority_levels": 2}}, "config.json: batching.priority: unknown setting; expected .*priority_levels"),
])
def test_config_json_priority_errors_fail_at_load_naming_the_field(block, message):
    from tiny_models import tiny_config

    from service.repository import spec_from_config

    with pytest.raises(ValueError, match=message):
        spec_from_config(tiny_config("tiny", batching=block), "tiny")
