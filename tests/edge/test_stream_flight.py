"""StreamFlight on its own: segments spooled to temp files and read back, relaying past the
limit with bounded memory and disk, failure reaching readers, a fetch nobody reads stopped."""

from __future__ import annotations

import asyncio
import os

import pytest

from edge.policy import make_policy
from edge.store import Store, StoreConfig
from edge.stream_flight import StreamFailed, StreamFlight

CS = 4096


@pytest.fixture
def store(tmp_path):
    s = Store(StoreConfig(tmp_path / "c", 64 * CS, 0, CS, fsync=False),
              make_policy("lru", 64 * CS), make_policy("lru", 0))
    yield s
    s.close()


def _flight(store, limit: int = 1 << 30) -> StreamFlight:
    return StreamFlight("/s", CS, {"etag": '"x"'}, {}, limit,
                        lambda i: store.new_stream_writer("/s", i))


def _data(n: int) -> bytes:
    return bytes((i * 7 + i // 251) & 0xFF for i in range(n))


async def _read_all(fl: StreamFlight, rid: int) -> bytes:
    out, pos = bytearray(), 0
    while data := await fl.read(pos, rid):
        out += data
        pos += len(data)
    return bytes(out)


async def test_spooled_segments_are_read_back_from_their_temp_files(store):
    fl = _flight(store)
    data = _data(3 * CS + 100)
    rid = fl.join()
    for i in range(0, len(data), 1000):
        fl.feed(data[i:i + 1000])
        assert await fl.room()
    fl.end()
    assert await fl.flush()
    assert sorted(fl.writers) == [0, 1, 2, 3] and sorted(fl.fds) == [0, 1, 2, 3]
    assert fl.mem == {}  # nothing of the body is held in memory once spooled
    assert await _read_all(fl, rid) == data
    fl.leave(rid)
    fl.held = False
    fl.stop_storing("test")
    fl.close_if_idle()
    assert fl.fds == {} and os.listdir(store.layout.tmp) == []


async def test_past_the_limit_it_relays_with_bounded_memory_and_frees_spool_space(store):
    fl = _flight(store, limit=4 * CS)
    data = _data(40 * CS)
    reader = asyncio.ensure_future(_read_all(fl, fl.join()))
    peak_mem = 0
    for i in range(0, len(data), CS // 2):
        fl.feed(data[i:i + CS // 2])
        assert await fl.room()  # waits for the reader once relaying
        peak_mem = max(peak_mem, sum(len(b) for b in fl.mem.values()))
    assert not fl.storing and fl.writers == {}
    assert fl.fds == {}  # the spooled segments the reader passed were let go (space freed)
    fl.end()
    assert await reader == data
    assert peak_mem <= 3 * CS  # relaying holds about two segments, never the body
    assert os.listdir(store.layout.tmp) == []


async def test_a_failure_reaches_readers_and_nothing_is_left(store):
    fl = _flight(store)
    rid = fl.join()
    fl.feed(_data(CS + 10))
    await fl.room()
    reader = asyncio.ensure_future(fl.read(CS + 10, rid))
    await asyncio.sleep(0)
    fl.fail("origin connection lost")
    with pytest.raises(StreamFailed):
        await reader
    fl.leave(rid)
    fl.held = False
    await asyncio.gather(*fl.writes.values())
    fl.close_if_idle()
    assert os.listdir(store.layout.tmp) == []


async def test_a_relayed_body_nobody_reads_any_more_is_given_up(store):
    fl = _flight(store, limit=CS)
    rid = fl.join()
    fl.feed(_data(2 * CS))
    assert not fl.storing
    fl.leave(rid)
    assert await fl.room() is False
