"""The update streams of ``store.updates()`` on their own: delivery, back-pressure by replacement (a consumer
that stops reading holds one update, however many epochs pass), ending, and closing."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc

import pytest

from ragflow.store import StoreUpdate, UpdateStream
from ragflow.store.updates import UpdateHub


def update(epoch: int, *docs: str) -> StoreUpdate:
    return StoreUpdate(epoch, docs, (), len(docs), (), 1.0e9 + epoch, 0.01, 0.001)


def no_failure() -> BaseException | None:
    return None


def test_a_consumer_that_keeps_up_gets_every_update_in_order() -> None:
    async def main() -> list[StoreUpdate]:
        hub = UpdateHub()
        stream = UpdateStream(hub, no_failure)
        got = []
        for epoch in range(1, 6):
            hub.publish(update(epoch, f"doc{epoch}.md"))
            got.append(await anext(stream))
        return got

    got = asyncio.run(main())
    assert [u.epoch for u in got] == [1, 2, 3, 4, 5]
    assert [u.missed for u in got] == [0] * 5
    assert got[2].indexed == ("doc3.md",) and got[2].documents == ("doc3.md",)


def test_a_stalled_consumer_gets_the_latest_update_with_the_count_it_missed_in_flat_memory() -> None:
    hub = UpdateHub()
    stream = UpdateStream(hub, no_failure)
    for epoch in range(1, 101):  # warm up allocations (interned strings, dataclass machinery)
        hub.publish(update(epoch, "a.md"))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for epoch in range(101, 20_101):
            hub.publish(update(epoch, f"doc{epoch}.md"))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 20_000, f"20,000 unread updates grew memory by {after - before} bytes"
    latest = asyncio.run(anext(stream))
    assert latest.epoch == 20_100 and latest.indexed == ("doc20100.md",)
    assert latest.missed == 20_099


def test_an_update_published_from_another_thread_wakes_a_waiting_consumer() -> None:
    async def main() -> StoreUpdate:
        hub = UpdateHub()
        stream = UpdateStream(hub, no_failure)
        threading.Timer(0.05, hub.publish, args=(update(3, "late.md"),)).start()
        return await asyncio.wait_for(anext(stream), 5)

    assert asyncio.run(main()).indexed == ("late.md",)


def test_a_stream_ends_when_the_store_stops_after_delivering_what_it_holds() -> None:
    async def main() -> tuple[list[int], list[int]]:
        hub = UpdateHub()
        stream = UpdateStream(hub, no_failure)
        hub.publish(update(1, "a.md"))
        hub.stop()
        delivered = [u.epoch async for u in stream]
        late = [u.epoch async for u in UpdateStream(hub, no_failure)]  # created after the stop
        return delivered, late

    assert asyncio.run(main()) == ([1], [])


def test_a_restarted_hub_serves_new_streams() -> None:
    async def main() -> int:
        hub = UpdateHub()
        hub.stop()
        hub.open()
        stream = UpdateStream(hub, no_failure)
        hub.publish(update(9, "b.md"))
        return (await anext(stream)).epoch

    assert asyncio.run(main()) == 9


def test_aclose_ends_a_waiting_iteration_and_stops_receiving() -> None:
    async def main() -> tuple[list[StoreUpdate], bool]:
        hub = UpdateHub()
        stream = UpdateStream(hub, no_failure)
        waiting = asyncio.ensure_future(anext(stream, None))
        await asyncio.sleep(0.01)
        await stream.aclose()
        result = await asyncio.wait_for(waiting, 5)
        hub.publish(update(2, "after.md"))
        return [u async for u in stream], result is None and not hub.listening

    assert asyncio.run(main()) == ([], True)


def test_async_with_closes_the_stream() -> None:
    async def main() -> bool:
        hub = UpdateHub()
        async with UpdateStream(hub, no_failure):
            assert hub.listening
        return hub.listening

    assert asyncio.run(main()) is False


def test_a_failed_engine_is_raised_to_a_waiting_consumer() -> None:
    failure = RuntimeError("disk on fire")
    failed: list[BaseException] = []

    async def main() -> None:
        stream = UpdateStream(UpdateHub(), lambda: failed[0] if failed else None)
        threading.Timer(0.05, failed.append, args=(failure,)).start()
        await asyncio.wait_for(anext(stream), 5)

    with pytest.raises(RuntimeError, match="disk on fire"):
        asyncio.run(main())


def test_a_cancelled_wait_leaves_the_stream_usable() -> None:
    async def main() -> int:
        hub = UpdateHub()
        stream = UpdateStream(hub, no_failure)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(stream), 0.05)
        hub.publish(update(4, "c.md"))
        return (await asyncio.wait_for(anext(stream), 5)).epoch

    assert asyncio.run(main()) == 4


def test_a_dropped_stream_stops_receiving() -> None:
    hub = UpdateHub()
    UpdateStream(hub, no_failure)  # never kept: collected at once
    assert not hub.listening
