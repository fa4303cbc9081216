"""A worker killed by SIGKILL in the crash tests: writes chunks and reports each commit.

    python crash_child.py DIR mid    commit chunks 0-2 of /crash, write half of chunk 3, hang
    python crash_child.py DIR loop   fill objects forever, printing "C key index" per commit
    python crash_child.py DIR shard N  a worker owning shard N of 2: fill /w/0../w/19, print stats
"""

from __future__ import annotations

import sys
import time
import zlib
from pathlib import Path

from edge.policy import make_policy
from edge.store import Store, StoreConfig
from tests.edge.store.conftest import CS, meta_for, payload


def main() -> None:
    root, mode = Path(sys.argv[1]), sys.argv[2]
    s = Store(StoreConfig(root, 1 << 30, 0, CS, fsync=True), make_policy("lru", 1 << 30),
              make_policy("lru", 0))
    if mode == "mid":
        m = meta_for("/crash", 4 * CS)
        data = payload(m.key, m.size)
        s.put_meta(m)
        for i in range(3):
            w = s.new_writer(m, i)
            w.write(data[i * CS:(i + 1) * CS])
            assert w.commit()
        w = s.new_writer(m, 3)
        w.write(data[3 * CS:3 * CS + CS // 2])
        print("MID", flush=True)
        time.sleep(60)
        return
    if mode == "shard":
        me = int(sys.argv[3])
        s = Store(StoreConfig(root, 1 << 30, 0, CS, fsync=False,
                              owns=lambda ck: zlib.crc32(ck.encode()) % 2 == me),
                  make_policy("lru", 1 << 30), make_policy("lru", 0))
        for k in range(20):
            m = meta_for(f"/w/{k}", 2 * CS + k)
            data = payload(m.key, m.size)
            s.put_meta(m)  # both workers write everything: same files, concurrently
            for i in range(s.chunk_count(m)):
                a, b = s.chunk_bounds(m, i)
                w = s.new_writer(m, i)
                w.write(data[a:b])
                w.commit()
        print(s.stats()["disk"].objects, s.stats()["disk"].used_bytes, flush=True)
        s.close()
        return
    n = 0
    while True:
        m = meta_for(f"/loop/{n}", 3 * CS + 17)
        data = payload(m.key, m.size)
        s.put_meta(m)
        for i in range(s.chunk_count(m)):
            a, b = s.chunk_bounds(m, i)
            w = s.new_writer(m, i)
            for off in range(a, b, 4096):  # many small writes: kills land mid-chunk too
                w.write(data[off:min(b, off + 4096)])
            assert w.commit()
            print("C", m.key, i, flush=True)
        n += 1


if __name__ == "__main__":
    main()
