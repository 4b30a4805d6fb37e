"""StreamBudget: what one stream holds, in images and bytes (service/streams.py)."""
from __future__ import annotations

import asyncio

import pytest

from service.generated.convnet.v1 import convnet_pb2 as pb
from service.streams import StreamBudget, request_images


def test_acquire_waits_until_a_release_makes_room_in_images():
    async def main():
        budget = StreamBudget(max_images=16, max_bytes=10**9)
        await budget.acquire(8, 10)
        await budget.acquire(8, 10)
        third = asyncio.ensure_future(budget.acquire(8, 10))
        await asyncio.sleep(0)
        blocked = not third.done()
        budget.release(8, 10)
        await asyncio.wait_for(third, 5)
        return blocked, budget.images, budget.bytes

    assert asyncio.run(main()) == (True, 16, 20)


def test_the_model_queue_size_bounds_a_stream_below_its_own_setting():
    budget = StreamBudget(max_images=256, max_bytes=10**9)
    budget.images = 1016
    assert not budget.fits(8, 0, max_images=1024)  # 1016 + 8 > min(256, 1024)
    budget.images = 120
    assert budget.fits(8, 0, max_images=1024) and not budget.fits(8, 0, max_images=127)


def test_bytes_bound_counts_replies_grown_after_admission():
    budget = StreamBudget(max_images=10**6, max_bytes=1000)
    budget.images, budget.bytes = 1, 100
    assert budget.fits(1, 900)
    budget.grow(850)
    assert not budget.fits(1, 100)


def test_a_request_larger_than_both_bounds_is_admitted_when_the_stream_holds_nothing():
    budget = StreamBudget(max_images=4, max_bytes=1024)
    assert budget.fits(64, 10**8)
    asyncio.run(budget.acquire(64, 10**8))
    assert not budget.fits(1, 1)


@pytest.mark.parametrize("request_, images", [
    (pb.ClassifyRequest(images=pb.EncodedImages(images=[b"a", b"b", b"c"])), 3),
    (pb.ClassifyRequest(tensor=pb.Tensor(shape=[8, 3, 32, 32])), 8),
    (pb.ClassifyRequest(tensor=pb.Tensor(shape=[2**62, 3, 32, 32])), 2**31),
    (pb.ClassifyRequest(tensor=pb.Tensor(shape=[0, 3, 32, 32])), 1),
    (pb.ClassifyRequest(), 1),
])
def test_request_images_reads_the_count_without_decoding(request_, images):
    assert request_images(request_) == images

