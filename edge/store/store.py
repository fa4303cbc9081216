"""The edge's two-tier chunk store: memory tier for hot chunks, disk tier under the cache dir.

Rules this file keeps:
- A chunk is complete iff its file exists under its final name ``<version>.<index>`` (written
  to tmp/, length verified against the chunk bounds and the object's current version, fsynced,
  renamed).  meta.json is replaced atomically and always written before its chunks.
- The hit path (``get_meta``/``get_chunk`` on indexed keys) touches no disk and takes no lock;
  an index miss checks the disk (another worker may have written it, or the loader has not
  reached it yet).
- Index and tier accounting change only under ``_lock``; file removal (eviction victims, old
  versions, purged chunks) runs on the janitor thread, never on the serving path.
- Disk policy accounting covers only chunk keys ``cfg.owns`` accepts (one owner per key when
  several workers share the directory); the memory tier is per process and covers all.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.keys import chunk_key, split_chunk_key
from contracts.reports import TierUsage
from edge.store import rebuild
from edge.store.fsio import (
    DiskFull,
    FaultHook,
    atomic_write,
    fsync_dir,
    is_disk_full,
    replace_into,
    unlink_quiet,
)
from edge.store.integrity import ChunkCorrupt, read_chunk, stamp
from edge.store.janitor import Janitor
from edge.store.journal import POLL_INTERVAL, PREFIX_MARK, Journal
from edge.store.layout import META_NAME, Layout, parse_chunk_name
from edge.store.meta import VARY_POINTER, VARY_PURGED, ObjectMeta
from edge.store.refs import ChunkRef, Entry
from edge.store.tiers import PolicyTier
from edge.store.writer import ChunkWriter

if TYPE_CHECKING:
    from edge.policy import Policy

log = logging.getLogger(__name__)

__all__ = ["ChunkRef", "ChunkWriter", "DiskFull", "ObjectMeta", "Store", "StoreConfig"]

SENT_CHECKS = 4096  # chunk files sent unread waiting for the scrubber (the newest are kept)
CHECKED_MAX = 200_000  # chunk files this process knows good before it forgets them all
DISK_FULL_RETRY = 1.0  # while full, let one write try every this many seconds


@dataclass
class StoreConfig:
    dir: Path
    disk_bytes: int
    memory_bytes: int
    chunk_size: int
    fsync: bool = True
    owns: Callable[[str], bool] | None = None  # chunk keys this process accounts/evicts
    loader_batch: int = 100  # loader: objects between pauses (like nginx loader_files)
    loader_sleep: float = 0.0  # loader: pause between batches (like nginx loader_sleep)
    promote_after: int = 2  # disk hits before a chunk is copied into the memory tier
    scrub_rate: int = 0  # bytes/s of chunks re-read to check their checksums (0: never)
    scrub_interval: float = 86400.0  # s from the start of one scrub pass to the next
    fault_hook: FaultHook | None = None  # hook(op, path) before disk ops; raise OSError to test

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)
        if self.chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if self.disk_bytes < 0 or self.memory_bytes < 0:
            raise ValueError("tier sizes must not be negative")


class Store:
    def __init__(self, cfg: StoreConfig, disk_policy: Policy, memory_policy: Policy) -> None:
        self.cfg = cfg
        self.layout = Layout(cfg.dir, cfg.chunk_size)
        self.layout.make_dirs()
        self.disk = PolicyTier(disk_policy, cfg.disk_bytes)
        self.memory = PolicyTier(memory_policy, cfg.memory_bytes)
        self.id = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.rebuilding = False
        self.rebuilt = threading.Event()
        self.counters = dict.fromkeys(
            ("evictions", "evicted_bytes", "memory_evictions", "promotions", "disk_full_events",
             "commits", "aborted_commits", "unchecked_chunks", "corrupt_chunks", "scrubbed_bytes",
             "scrub_passes"), 0)
        self._cs = cfg.chunk_size
        self._owns = cfg.owns
        self._disk_policy = disk_policy  # hot-path shortcuts
        self._mem_policy = memory_policy
        self._mem_cap = self.memory.capacity
        self._lock = threading.RLock()
        self._objs: dict[str, Entry] = {}
        self._seen: dict[str, int] = {}  # disk hits so far of chunks not in the memory tier
        self._writing: dict[str, int] = {}  # object key -> writers open in this process
        self._disk_full = False
        self._full_retry_at = 0.0
        self._closing = False
        self._loader: threading.Thread | None = None
        self._journal = Journal(self.layout.journal, self.id)
        # (key or prefix, is_prefix): an object was stored, purged or removed, here or in
        # another worker; state held beside the store (negative answers) drops its copy
        self.on_change: Callable[[str, bool], None] | None = None
        self._journal_due = 0.0
        self._changes = 0  # bumped by poll_changes and purge: anything read or begun before
        # a bump is suspect (a disk read, a stream being stored)
        self._janitor = Janitor()
        self._scrub_todo: collections.deque[tuple[str, str, int]] = collections.deque()
        self._scrub_began: float | None = None  # the current pass's start (monotonic)
        self._scrub_next = 0.0
        self._scrubbing = False
        # chunk files sent without being read (sendfile), checked by the scrubber ahead of its
        # pass; and those this process wrote or checked (their bytes are known good)
        self._sent: collections.deque[tuple[str, int]] = collections.deque(maxlen=SENT_CHECKS)
        self._checked: set[str] = set()

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background index rebuild and return at once (serving works meanwhile)."""
        self.start_loader()

    def start_loader(self) -> None:
        if self._loader is not None:
            return
        self.rebuilding = True
        self._loader = threading.Thread(target=rebuild.run, args=(self,),
                                        name="edge-store-loader", daemon=True)
        self._loader.start()

    async def wait_rebuilt(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.rebuilt.wait, timeout)

    def flush(self) -> None:
        """Block until background chores submitted so far are done (tests, shutdown)."""
        self._janitor.flush()

    def close(self) -> None:
        self._closing = True
        if self._loader is not None:
            self._loader.join()
        self._janitor.flush()
        self._janitor.close()
        self._journal.close()

    # -- geometry -----------------------------------------------------------------------------
    def chunk_count(self, meta: ObjectMeta) -> int:
        return -(-meta.size // self._cs)

    def chunk_bounds(self, meta: ObjectMeta, index: int) -> tuple[int, int]:
        start = index * self._cs
        if index < 0 or start >= meta.size:
            raise IndexError(f"chunk {index} out of range for {meta.size} bytes")
        return start, min(meta.size, start + self._cs)

    # -- lookups (the hit path) ---------------------------------------------------------------
    def get_meta(self, key: str) -> ObjectMeta | None:
        if time.monotonic() >= self._journal_due:
            self.poll_changes()
        e = self._objs.get(key)
        if e is not None:
            return e.meta
        return self._load_meta(key)

    def get_chunk(self, meta: ObjectMeta, index: int) -> ChunkRef | None:
        e = self._objs.get(meta.key)
        if e is not None and (e.meta is meta or e.version == meta.version):
            ref = e.mem.get(index)
            if ref is None:
                ref = e.chunks.get(index)
            if ref is not None:
                return ref
        return self._probe_chunk(meta, index)

    def record_hit(self, meta: ObjectMeta, index: int) -> None:
        """One request served from the store (call once per chunk served; for a miss call
        ``should_store`` instead).  Cheap: policy bookkeeping only; a chunk hit often enough
        from disk is copied into the memory tier by the janitor."""
        ck = f"{meta.key}#{index}"
        length = meta.size - index * self._cs
        if length > self._cs:
            length = self._cs
        owns = self._owns
        with self._lock:
            if owns is None or owns(ck):
                self._disk_policy.access(ck, length)
            if self._mem_cap <= 0 or self._mem_policy.access(ck, length) \
                    or length > self._mem_cap:
                return
            n = self._seen.get(ck, 0) + 1
            if n < self.cfg.promote_after:
                if len(self._seen) >= 65536:
                    self._seen.clear()
                self._seen[ck] = n
                return
            self._seen.pop(ck, None)
        self._janitor.submit(self._promote, meta, index)

    def record_remote_hits(self, hits: Iterable[tuple[str, int]]) -> None:
        """Hits other workers served for chunk keys this process owns (batched by the server)."""
        with self._lock:
            for ck, size in hits:
                self.disk.policy.access(ck, size)

    def should_store(self, meta: ObjectMeta, index: int) -> bool:
        """A miss for this chunk: records the request with the disk policy and says whether
        to write it (admission; False while the disk is full, except for a periodic retry)."""
        ck = chunk_key(meta.key, index)
        length = min(self._cs, meta.size - index * self._cs)
        if self._disk_full:
            now = time.monotonic()
            if now < self._full_retry_at:
                return False
            self._full_retry_at = now + DISK_FULL_RETRY
        if not self._owned(ck):
            return True
        with self._lock:
            self.disk.policy.access(ck, length)
            return self.disk.fits(length) and self.disk.policy.admit(ck, length)

    def chunk_missing(self, meta: ObjectMeta, index: int) -> None:
        """The caller found an indexed chunk's file gone (evicted by another worker)."""
        with self._lock:
            e = self._objs.get(meta.key)
            if e is not None and e.version == meta.version:
                ref = e.chunks.pop(index, None)
                if ref is not None:
                    self.disk.remove(chunk_key(meta.key, index), ref.path)
                mem = e.mem.get(index)
                if mem is not None and mem.path:  # its bytes still serve, from memory only
                    e.mem[index] = ChunkRef("", mem.length, mem.data)

    @property
    def disk_full(self) -> bool:
        return self._disk_full

    def stats(self) -> dict[str, TierUsage]:
        return {
            "memory": TierUsage(self.memory.used, self.memory.capacity, self.memory.objects),
            "disk": TierUsage(self.disk.used, self.disk.capacity, self.disk.objects,
                              full=self._disk_full),
        }

    def pin(self, key: str, rank: int) -> None:
        with self._lock:
            self.disk.policy.pin(key, rank)

    def unpin(self, key: str) -> None:
        with self._lock:
            self.disk.policy.unpin(key)

    # -- writes ---------------------------------------------------------------------------------
    def put_meta(self, meta: ObjectMeta) -> None:
        """Store meta atomically (blocking: fsync).  A new version makes the old chunks
        unreachable at once and removes them in the background; the same version (a 304
        revalidation) keeps them."""
        try:
            atomic_write(self.layout.temp_path(), self.layout.meta_path(meta.key),
                         meta.to_json(), self.cfg.fsync, self.cfg.fault_hook)
        except OSError as e:
            if is_disk_full(e):
                self._note_disk_full()
                raise DiskFull(e.errno, f"disk full writing meta: {e.strerror}") from e
            raise
        self._disk_full = False
        version = meta.version
        with self._lock:
            e = self._objs.get(meta.key)
            if e is not None and e.version == version:
                e.meta = meta
                changed = False
            else:
                if e is not None:
                    self._drop_entry_locked(e)
                self._objs[meta.key] = Entry(meta, version)
                changed = True
        self._journal.append(meta.key)
        self._changed(meta.key)
        if changed:
            self._janitor.submit(self._clean_versions, meta.key)

    def new_writer(self, meta: ObjectMeta, index: int) -> ChunkWriter:
        """A writer for one chunk of meta (put_meta first).  Raises DiskFull, IndexError."""
        start, end = self.chunk_bounds(meta, index)
        with self._lock:
            self._writing[meta.key] = self._writing.get(meta.key, 0) + 1
        return ChunkWriter(self, meta, index, end - start, keep=self.memory.fits(end - start))

    def new_stream_writer(self, key: str, index: int) -> ChunkWriter:
        """A writer for chunk ``index`` of an object whose length is not known yet (an origin
        body without Content-Length): it accepts up to one chunk size of bytes into a temp
        file; ``bind(meta)`` once the body has ended, then ``put_meta`` and ``commit``.  Until
        then nothing is visible, so a body cut short leaves only temp garbage."""
        if index < 0:
            raise IndexError(f"chunk {index} out of range")
        with self._lock:
            self._writing[key] = self._writing.get(key, 0) + 1
        placeholder = ObjectMeta(key=key, size=(index + 1) * self._cs)
        return ChunkWriter(self, placeholder, index, self._cs, keep=False)

    def _writer_done(self, key: str) -> None:
        with self._lock:
            n = self._writing.get(key, 0) - 1
            if n > 0:
                self._writing[key] = n
            else:
                self._writing.pop(key, None)

    def _place(self, w: ChunkWriter, final: str) -> None:
        """A complete temp chunk made durable (fsync when configured) and renamed into place:
        whole or not at all under its final name."""
        hook = self.cfg.fault_hook
        if not stamp(w._fd, w.crc):  # before fsync and rename: as durable as the bytes
            self.counters["unchecked_chunks"] += 1
        if self.cfg.fsync:
            if hook:
                hook("fsync", w.tmp_path)
            os.fsync(w._fd)
        w._close_fd()
        if hook:
            hook("rename", final)
        replace_into(w.tmp_path, final)
        w.state = "committed"

    def _commit(self, w: ChunkWriter) -> bool:
        if w.state != "open":
            return False
        key, index, version = w.meta.key, w.index, w.version
        if w.written != w.length or not self._is_current(key, version):
            w.abort()
            self.counters["aborted_commits"] += 1
            return False
        final = self.layout.chunk_path(key, version, index)
        try:
            self._place(w, final)
        except OSError as e:
            w.abort()
            if is_disk_full(e):
                self._note_disk_full()
                raise DiskFull(e.errno, f"disk full committing chunk: {e.strerror}") from e
            raise
        finally:
            if w.state == "committed":
                w._release()
        if self.cfg.fsync:
            try:
                fsync_dir(os.path.dirname(final))
            except OSError:
                log.warning("fsync of %s failed", os.path.dirname(final), exc_info=True)
        self._disk_full = False
        data = w._data()
        if key not in self._objs:
            self._load_meta(key)
        ck = chunk_key(key, index)
        victims: list[tuple[str, str]] = []
        with self._lock:
            e = self._objs.get(key)
            if e is not None:
                current = e.version == version
            else:  # not indexed (just changed by another worker): the disk decides
                m = self._read_meta_file(key)
                current = m is not None and m.version == version
            if current:
                self._checked.add(final)
                if e is not None:
                    e.chunks[index] = ChunkRef(final, w.length)
                    if data is not None:
                        self._mem_put_locked(e, index, ck, final, data)
                if self._owned(ck) and self.disk.fits(w.length):
                    victims = self._drop_victims_locked(self.disk.insert(ck, w.length, final))
        if not current:  # purged or re-versioned while we wrote: the chunk belongs to nobody
            unlink_quiet(final)
            self.counters["aborted_commits"] += 1
            return False
        self.counters["commits"] += 1
        if victims:
            self._janitor.submit(self._unlink_victims, victims)
        return True

    def change_mark(self) -> int:
        """A mark to hand back to commit_stream: has anything been purged (here) or changed
        (by another worker) since?"""
        return self._changes

    def commit_stream(self, meta: ObjectMeta, writers: list[ChunkWriter],
                      pointer: ObjectMeta | None = None, since: int | None = None) -> int:
        """Store an object whose length was known only at its end (stream writers, already
        bound to ``meta``): its chunks are renamed into place first, then its meta (and the
        Vary pointer) written, so a worker that sees the meta finds every admitted chunk at
        once.  A crash in between leaves chunk files that no meta names (the loader removes
        them); a chunk of the wrong length is never placed.  With ``since`` (change_mark()
        when the stream began), nothing is stored if a purge or another worker's change came
        in between: the purged object must not come back.  Returns the chunks stored.
        Blocking: call it in a thread."""
        placed: list[tuple[int, str, int]] = []
        if since is not None and since != self._changes:
            for w in writers:
                w.abort()
            return 0
        try:
            for w in writers:
                if (w.state != "open" or w.written != w.length or w.version != meta.version
                        or w.meta.key != meta.key or not self.should_store(meta, w.index)):
                    w.abort()
                    continue
                final = self.layout.chunk_path(meta.key, meta.version, w.index)
                self._place(w, final)
                w._release()
                placed.append((w.index, final, w.length))
            if placed and self.cfg.fsync:
                fsync_dir(self.layout.object_dir(meta.key))
            if pointer is not None:
                self.put_meta(pointer)
            self.put_meta(meta)
            if since is not None and since != self._changes:  # a purge came meanwhile
                self._hard_remove(meta.key)
                return 0
        except BaseException as e:
            for w in writers:
                w.abort()
            for _, final, _ in placed:
                unlink_quiet(final)
            if is_disk_full(e) and not isinstance(e, DiskFull):
                self._note_disk_full()
                raise DiskFull(e.errno, f"disk full storing a stream: {e.strerror}") from e
            raise
        victims: list[tuple[str, str]] = []
        with self._lock:
            e = self._objs.get(meta.key)
            if e is None or e.version != meta.version:
                return 0  # purged or replaced right after: the janitor removes the files
            for index, final, length in placed:
                self._checked.add(final)
                e.chunks[index] = ChunkRef(final, length)
                ck = chunk_key(meta.key, index)
                if self._owned(ck) and self.disk.fits(length):
                    victims += self._drop_victims_locked(self.disk.insert(ck, length, final))
            self.counters["commits"] += len(placed)
        if victims:
            self._janitor.submit(self._unlink_victims, victims)
        return len(placed)

    def purge(self, key: str | None = None, prefix: str | None = None, soft: bool = False) -> int:
        """Purge one key and/or every key under prefix; returns how many objects matched.
        Hard: meta and chunks removed.  Soft: marked stale (revalidate before serving).
        Blocking (a prefix purge reads every meta on disk): call it in a thread."""
        if key is None and not prefix:
            raise ValueError("purge needs a key or a non-empty prefix")
        with self._lock:
            self._changes += 1  # a stream begun before it must not store its object after it
        keys: set[str] = set()
        if key is not None:
            keys.add(key)
        if prefix:
            with self._lock:
                keys.update(k for k in self._objs if k.startswith(prefix))
            keys.update(self._disk_keys(prefix))
            self._journal.append(PREFIX_MARK + prefix)  # for what is held beside the store
            self._changed(prefix, True)
        return sum(self._soft_purge(k) if soft else self._hard_remove(k) for k in sorted(keys))

    def _changed(self, key: str, prefix: bool = False) -> None:
        if self.on_change is not None:
            self.on_change(key, prefix)

    def remove_object(self, key: str) -> None:
        """Hard-remove one object (invalidation by an unsafe method, corruption)."""
        self._hard_remove(key)

    # -- cross-worker changes -------------------------------------------------------------------
    def poll_changes(self) -> int:
        """Apply the keys other workers changed (put_meta/purge/eviction): their index entries
        and memory copies are dropped, so the next lookup re-reads the disk.  Called from
        get_meta every POLL_INTERVAL."""
        self._journal_due = time.monotonic() + POLL_INTERVAL
        try:
            keys = self._journal.read_others()
        except OSError:
            return 0
        if not keys:
            return 0
        for key in keys:
            if key.startswith(PREFIX_MARK):
                self._changed(key[len(PREFIX_MARK):], True)
            else:
                self._changed(key)
        with self._lock:
            self._changes += 1
            dropped = []
            for key in keys:
                e = self._objs.pop(key, None)
                if e is not None:
                    for i, r in e.mem.items():
                        self.memory.remove(chunk_key(key, i), r.path)
                    e.mem.clear()
                    dropped.append(e)
        for e in dropped:
            self._janitor.submit(self._reconcile, e)
        return len(keys)

    def _reconcile(self, old: Entry) -> None:
        """Disk accounting after another worker changed old's object: keep the chunks of the
        version now on disk, forget the rest (their files are being removed)."""
        m = self._read_meta_file(old.meta.key)
        with self._lock:
            self._drop_entry_locked(old, keep_version=m.version if m is not None else None)

    # -- internals: index ---------------------------------------------------------------------
    def _owned(self, ck: str) -> bool:
        owns = self._owns
        return owns is None or owns(ck)

    def _read_meta_file(self, key: str) -> ObjectMeta | None:
        try:
            with open(self.layout.meta_path(key), "rb") as f:
                data = f.read()
        except OSError as e:  # gone, or not a readable file (a directory, an I/O error)
            if not isinstance(e, FileNotFoundError | NotADirectoryError):
                log.warning("unreadable meta for %r ignored: %s", key, e)
            return None
        try:
            m = ObjectMeta.from_json(data)
        except ValueError:
            log.warning("corrupt meta for %r ignored", key)
            return None
        return m if m.key == key else None

    def _load_meta(self, key: str) -> ObjectMeta | None:
        """Index miss: the object may be on disk (loader not there yet, or another worker)."""
        changes = self._changes
        m = self._read_meta_file(key)
        if m is None:
            return None
        with self._lock:
            e = self._objs.get(key)
            if e is not None:
                return e.meta
            if not os.path.exists(self.layout.meta_path(key)):
                return None  # hard-removed since we read it (removal holds the lock)
            if changes == self._changes:  # else another worker may have changed it meanwhile:
                self._objs[key] = Entry(m, m.version)  # answer, but do not index
            return m

    def _is_current(self, key: str, version: str) -> bool:
        e = self._objs.get(key)
        if e is not None:
            return e.version == version
        m = self._read_meta_file(key)
        return m is not None and m.version == version

    def _probe_chunk(self, meta: ObjectMeta, index: int) -> ChunkRef | None:
        start, end = self.chunk_bounds(meta, index)
        length = end - start
        version = meta.version
        path = self.layout.chunk_path(meta.key, version, index)
        try:
            size = os.stat(path).st_size
        except (FileNotFoundError, NotADirectoryError):
            return None
        if size != length:  # cannot happen to a renamed chunk: foreign damage; loader removes
            return None
        if meta.key not in self._objs:
            self._load_meta(meta.key)
        ref = ChunkRef(path, length)
        ck = chunk_key(meta.key, index)
        victims: list[tuple[str, str]] = []
        with self._lock:
            e = self._objs.get(meta.key)
            if e is None or e.version != version:
                return None  # purged or changed since the caller read meta
            ref = e.chunks.setdefault(index, ref)
            if self._owned(ck) and self.disk.fits(length):
                victims = self._drop_victims_locked(self.disk.insert(ck, length, path))
        if victims:
            self._janitor.submit(self._unlink_victims, victims)
        return ref

    def _drop_victims_locked(self, victims: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Victims chosen by the disk policy leave the index now; files go later."""
        for ck, path in victims:
            key, idx = split_chunk_key(ck)
            e = self._objs.get(key)
            if e is not None:
                r = e.chunks.get(idx)
                if r is not None and r.path == path:
                    del e.chunks[idx]
        return victims

    def _drop_entry_locked(self, e: Entry, keep_version: str | None = None) -> None:
        """Forget e's memory copies and the disk accounting of its chunks (unless their file
        belongs to keep_version, the version now on disk)."""
        key = e.meta.key
        for i, r in e.mem.items():
            self.memory.remove(chunk_key(key, i), r.path)
        e.mem.clear()
        keep = f"/{keep_version}." if keep_version else None
        for i in range(self.chunk_count(e.meta)):
            ck = chunk_key(key, i)
            p = self.disk.paths.get(ck)
            if p is not None and (keep is None or keep not in p):
                self.disk.remove(ck, p)
        e.chunks.clear()

    def _mem_put_locked(self, e: Entry, index: int, ck: str, path: str, data: bytes) -> None:
        n = len(data)
        if not self.memory.fits(n) or not self.memory.policy.admit(ck, n):
            return
        for vk, vpath in self.memory.insert(ck, n, path):
            k, i = split_chunk_key(vk)
            ve = self._objs.get(k)
            if ve is not None:
                r = ve.mem.get(i)
                if r is not None and r.path == vpath:
                    del ve.mem[i]
            self.counters["memory_evictions"] += 1
        e.mem[index] = ChunkRef(path, n, data)

    # -- internals: janitor jobs ----------------------------------------------------------------
    def _unlink_victims(self, victims: list[tuple[str, str]]) -> None:
        freed = 0
        keys = set()
        for ck, path in victims:
            try:
                size = os.stat(path).st_size
                os.unlink(path)
            except FileNotFoundError:
                continue
            freed += size
            self.counters["evictions"] += 1
            self.counters["evicted_bytes"] += size
            keys.add(split_chunk_key(ck)[0])
        if freed:
            self._disk_full = False
        for key in keys:
            self._drop_if_empty(key)

    def _drop_if_empty(self, key: str) -> None:
        """An object whose every chunk was evicted loses its meta too (no index leak)."""
        d = self.layout.object_dir(key)
        with self._lock:
            e = self._objs.get(key)
            if (e is not None and (e.chunks or e.mem)) or self._writing.get(key):
                return
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                return
            if any(parse_chunk_name(n) for n in names):
                return
            self._objs.pop(key, None)
            unlink_quiet(f"{d}/{META_NAME}")
        self._journal.append(key)
        self._rmdir_quiet(d)

    def _clean_versions(self, key: str) -> None:
        """Remove chunk files of key that its current meta does not name (all if none)."""
        d = self.layout.object_dir(key)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return
        m = self._read_meta_file(key)
        for n in names:
            pv = parse_chunk_name(n)
            if pv is None or self._chunk_valid(m, *pv):
                continue
            m = self._read_meta_file(key)  # re-read: a newer version's chunk follows its meta
            if self._chunk_valid(m, *pv):
                continue
            p = f"{d}/{n}"
            with self._lock:
                ck = chunk_key(key, pv[1])
                self.disk.remove(ck, p)
                e = self._objs.get(key)
                if e is not None and (r := e.chunks.get(pv[1])) is not None and r.path == p:
                    del e.chunks[pv[1]]
            unlink_quiet(p)
        if m is None:
            self._rmdir_quiet(d)

    def _chunk_valid(self, m: ObjectMeta | None, version: str, index: int) -> bool:
        return m is not None and version == m.version and index < self.chunk_count(m)

    def _promote(self, meta: ObjectMeta, index: int) -> None:
        e = self._objs.get(meta.key)
        if e is None or e.version != meta.version or index in e.mem:
            return
        ref = e.chunks.get(index) or self._probe_chunk(meta, index)
        if ref is None:
            return
        try:
            data = ref.read()
        except ChunkCorrupt:
            self._corrupt(meta.key, ref.path)
            return
        except OSError:
            return
        self._checked.add(ref.path)
        with self._lock:
            if self._objs.get(meta.key) is e and index in e.chunks:
                self._mem_put_locked(e, index, chunk_key(meta.key, index), ref.path, data)
                self.counters["promotions"] += 1

    # -- integrity ----------------------------------------------------------------------------
    def sent_unread(self, ref: ChunkRef) -> None:
        """A chunk file is being sent without being read (sendfile): the scrubber checks it
        within a second or so, ahead of its pass (which may take days over a large disk), so
        damage on disk is served at most to the clients of that moment. Once per file."""
        path = ref.path
        if path in self._checked or self.cfg.scrub_rate <= 0:
            return
        if len(self._checked) >= CHECKED_MAX:
            self._checked.clear()
        self._checked.add(path)
        self._sent.append((path, ref.length))

    def scrub_due(self, now: float) -> None:
        """Housekeeping, once a second: hand the janitor the next second's share of the scrub
        (cfg.scrub_rate bytes: the chunk files sent unread first, then this process's chunks
        when a pass is running or due)."""
        if (self.cfg.scrub_rate <= 0 or self._scrubbing or self.rebuilding
                or (now < self._scrub_next and not self._sent)):
            return
        self._scrubbing = True
        self._janitor.submit(self._scrub_step, now)

    def _scrub_step(self, now: float) -> None:
        """Re-read up to scrub_rate bytes of chunks against their checksums (janitor thread).
        A pass walks the chunks indexed when it began; one that is gone or replaced since is
        skipped, one that fails takes its object with it (_corrupt)."""
        try:
            budget = self.cfg.scrub_rate
            sent = self._sent
            while sent and budget > 0 and not self._closing:
                path, length = sent.popleft()
                budget -= self._check_chunk(None, path, length)
            if budget <= 0 or (self._scrub_began is None and now < self._scrub_next):
                return
            if self._scrub_began is None:
                self._scrub_began = now
                with self._lock:
                    self._scrub_todo.extend(
                        (key, ref.path, ref.length) for key, e in self._objs.items()
                        for i, ref in e.chunks.items() if self._owned(chunk_key(key, i)))
            todo = self._scrub_todo
            while todo and budget > 0 and not self._closing:
                key, path, length = todo.popleft()
                budget -= self._check_chunk(key, path, length)
            if not todo:
                self.counters["scrub_passes"] += 1
                self._scrub_next = self._scrub_began + self.cfg.scrub_interval
                self._scrub_began = None
        finally:
            self._scrubbing = False

    def _check_chunk(self, key: str | None, path: str, length: int) -> int:
        """Read one chunk file against its checksum (janitor thread): bytes read. A damaged
        one takes its object (key None: the object named by the meta beside the file)."""
        try:
            read_chunk(path, length)
        except ChunkCorrupt:
            if key is None:
                key = self._key_beside(path)
            if key is not None:
                self._corrupt(key, path)
            else:
                unlink_quiet(path)  # no readable meta: the next open finds it gone
        except OSError:  # evicted, purged or replaced since it was queued
            return 0
        self.counters["scrubbed_bytes"] += length
        return length

    def _key_beside(self, path: str) -> str | None:
        try:
            with open(f"{os.path.dirname(path)}/{META_NAME}", "rb") as f:
                return ObjectMeta.from_json(f.read()).key
        except (OSError, ValueError):
            return None

    def _corrupt(self, key: str, path: str) -> None:
        """A chunk failed its checksum: its whole object goes (on every worker, through the
        journal, and out of the hot answers, whose meta it was) and the next request fetches
        it again."""
        log.warning("chunk %s of %r does not match its checksum: object removed", path, key)
        self.counters["corrupt_chunks"] += 1
        self._hard_remove(key)

    def _note_disk_full(self) -> None:
        if not self._disk_full:
            self.counters["disk_full_events"] += 1
        self._disk_full = True
        self._full_retry_at = time.monotonic() + DISK_FULL_RETRY
        self._janitor.submit(self._free_space)

    def _free_space(self) -> None:
        """The filesystem is full (maybe not by us): evict a little of our own to make room."""
        with self._lock:
            need = max(4 * self._cs, self.disk.capacity // 100)
            victims = self._drop_victims_locked(self.disk.evict(need))
        self._unlink_victims(victims)

    # -- internals: removal ---------------------------------------------------------------------
    def _hard_remove(self, key: str) -> int:
        """Meta and chunks vanish together: the object dir is renamed into tmp/ in one step
        (a refetch of the same version can never revive old chunks), then deleted later."""
        d = self.layout.object_dir(key)
        m = None if key in self._objs else self._read_meta_file(key)
        dead = self.layout.temp_path()
        with self._lock:
            e = self._objs.pop(key, None)
            if e is None and m is not None:
                e = Entry(m, m.version)
            if e is not None:
                self._drop_entry_locked(e)
            try:
                os.rename(d, dead)
                moved = True
            except FileNotFoundError:
                moved = False
        existed = e is not None or (moved and os.path.exists(f"{dead}/{META_NAME}"))
        self._journal.append(key)
        self._changed(key)
        if moved:
            self._janitor.submit(shutil.rmtree, dead, True)
        return int(existed)

    def _soft_purge(self, key: str) -> int:
        m = self._objs[key].meta if key in self._objs else self._read_meta_file(key)
        if m is None:  # nothing stored; what is held beside the store (a 404) goes too
            self._journal.append(key)
            self._changed(key)
            return 0
        if VARY_POINTER in m.vary:  # a varying URL: its variants stored until now go stale
            vary = {**m.vary, VARY_PURGED: repr(time.time())}
            self.put_meta(m.replace(soft_purged=True, vary=vary))
        elif not m.soft_purged:
            self.put_meta(m.replace(soft_purged=True))
        return 1

    def _disk_keys(self, prefix: str) -> list[str]:
        out = []
        for d in self.layout.object_dirs():
            try:
                with open(f"{d}/{META_NAME}", "rb") as f:
                    m = ObjectMeta.from_json(f.read())
            except (OSError, ValueError):
                continue
            if m.key.startswith(prefix):
                out.append(m.key)
        return out

    @staticmethod
    def _rmdir_quiet(d: str) -> None:
        try:
            os.rmdir(d)
        except OSError:
            pass

    # -- checks -------------------------------------------------------------------------------------
    def check(self) -> None:
        """Invariants (tests, off the hot path)."""
        with self._lock:
            self.disk.check()
            self.memory.check()
            assert self.memory.used <= self.cfg.memory_bytes
            for key, e in self._objs.items():
                assert e.version == e.meta.version and e.meta.key == key
                for i, r in e.mem.items():
                    assert r.data is not None and len(r.data) == r.length
                    assert self.memory.paths.get(chunk_key(key, i)) == r.path
