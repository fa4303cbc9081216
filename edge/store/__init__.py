"""The edge's two-tier chunk storage (memory + disk), crash-safe and shared by workers.

How the server drives it (blocking calls marked *: run them in a thread)::

    await store.start()                      # index rebuilt in the background; serve at once
    meta = store.get_meta(key)               # index, else meta.json on disk; None: miss
    ref = store.get_chunk(meta, i)           # ChunkRef or None; never blocks on eviction
    if ref:  store.record_hit(meta, i)       # serve ref.data, else sendfile(ref.open_fd());
                                             # FileNotFoundError -> store.chunk_missing(meta, i)
    else:
        if store.should_store(meta, i):      # admission (+ False while the disk is full)
            store.put_meta(meta) *           # before the first chunk; same version keeps chunks
            w = store.new_writer(meta, i)    # w.write(bytes) may raise DiskFull -> pass through
            ok = w.commit() *                # False: short, or the object changed meanwhile
    store.purge(key=..., prefix=..., soft=...) *;  store.stats();  store.disk_full
    store.close() *

Several worker processes may share one cache directory: give each ``StoreConfig.owns`` (which
chunk keys it accounts and evicts) and a disk policy sized for its share; changes one worker
makes (put_meta, purge) reach the others through ``journal.log`` within 50 ms.
See store.py for the rules, layout.py for where files live.
"""

from edge.store.fsio import DiskFull
from edge.store.meta import ObjectMeta
from edge.store.refs import ChunkRef
from edge.store.store import Store, StoreConfig
from edge.store.writer import ChunkWriter

__all__ = ["ChunkRef", "ChunkWriter", "DiskFull", "ObjectMeta", "Store", "StoreConfig"]
