"""The cache loader: rebuilds a store's index from the files on disk, in the background.

Like nginx's cache loader it walks the tree while the edge already serves (lookups that miss
the half-built index check the disk themselves), throttled by ``loader_batch``/``loader_sleep``.
It is also the crash janitor: temp files of dead processes, chunks of replaced versions, chunks
whose meta is gone, chunks of the wrong length and trees of another chunk size are removed.
Objects are indexed oldest first (meta.json mtime) so the policy's recency survives a restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import TYPE_CHECKING

from contracts.keys import chunk_key
from edge.proc import pid_alive
from edge.store.fsio import unlink_quiet
from edge.store.layout import META_NAME, key_hash, parse_chunk_name, temp_owner
from edge.store.meta import ObjectMeta
from edge.store.refs import ChunkRef, Entry

if TYPE_CHECKING:
    from edge.store.store import Store

log = logging.getLogger(__name__)

STALE_TEMP_AGE = 3600.0  # a temp file this old is garbage even if its pid number is alive again


def run(store: Store) -> None:
    """The loader thread's body: index every object dir, then drop other chunk sizes' trees."""
    try:
        clean_temp(store)
        n = 0
        for d in _dirs_oldest_first(store):
            if store._closing:
                break
            try:
                for _ in range(3):  # again if another worker changed something meanwhile
                    if _load_object(store, d):
                        break
            except OSError:
                log.warning("loader skipped %s", d, exc_info=True)
            n += 1
            if store.cfg.loader_sleep > 0 and n % max(1, store.cfg.loader_batch) == 0:
                time.sleep(store.cfg.loader_sleep)
    except Exception:
        log.exception("cache loader failed")
    finally:
        store.rebuilding = False
        store.rebuilt.set()
    for t in store.layout.old_trees():  # another chunk size's tree: garbage, maybe large
        if store._closing:
            break
        shutil.rmtree(t, ignore_errors=True)


def _dirs_oldest_first(store: Store) -> list[str]:
    """Object dirs by meta.json mtime, so the policy's recency after a restart follows
    when objects were stored (garbage without meta first) rather than hash order."""
    dated = []
    for d in store.layout.object_dirs():
        if store._closing:
            break
        try:
            t = os.stat(f"{d}/{META_NAME}").st_mtime
        except OSError:
            t = 0.0
        dated.append((t, d))
    dated.sort()
    return [d for _, d in dated]


def clean_temp(store: Store) -> None:
    """Temp files of dead processes are garbage (a crash mid-write leaves only these)."""
    now = time.time()
    try:
        names = os.listdir(store.layout.tmp)
    except FileNotFoundError:
        return
    me = os.getpid()
    for n in names:
        pid = temp_owner(n)
        if pid is None or pid == me:
            continue
        p = f"{store.layout.tmp}/{n}"
        if pid_alive(pid):
            try:
                if now - os.stat(p).st_mtime < STALE_TEMP_AGE:
                    continue
            except FileNotFoundError:
                continue
        if os.path.isdir(p):  # a hard-removed object dir whose deletion was cut short
            shutil.rmtree(p, ignore_errors=True)
        else:
            unlink_quiet(p)


def _load_object(store: Store, d: str) -> bool:
    """Index one object directory and remove its garbage; False: retry (raced a change)."""
    changes = store._changes
    try:
        names = os.listdir(d)
    except FileNotFoundError:  # removed meanwhile (purge, another worker's loader)
        return True
    try:
        with open(f"{d}/{META_NAME}", "rb") as f:
            m: ObjectMeta | None = ObjectMeta.from_json(f.read())
    except (FileNotFoundError, ValueError):
        m = None
    if m is not None and key_hash(m.key) != os.path.basename(d):
        m = None
    if m is None:  # purged, crashed before meta, or damaged: nothing here is reachable
        if META_NAME in names and not _meta_fresh(d):
            unlink_quiet(f"{d}/{META_NAME}")
        for n in names:
            if parse_chunk_name(n) and not _meta_fresh(d):
                unlink_quiet(f"{d}/{n}")
        store._rmdir_quiet(d)
        return True
    key, version, count = m.key, m.version, store.chunk_count(m)
    good: list[tuple[int, str, int]] = []
    for n in names:
        pv = parse_chunk_name(n)
        if pv is None:
            continue
        v, i = pv
        p = f"{d}/{n}"
        if v != version or i >= count:
            if not store._chunk_valid(store._read_meta_file(key), v, i):
                unlink_quiet(p)
            continue
        want = min(store._cs, m.size - i * store._cs)
        try:
            size = os.stat(p).st_size
        except FileNotFoundError:
            continue
        if size != want:
            unlink_quiet(p)
            continue
        good.append((i, p, want))
    victims: list[tuple[str, str]] = []
    with store._lock:
        if changes != store._changes:
            return False
        e = store._objs.get(key)
        if e is None:
            if not os.path.exists(f"{d}/{META_NAME}"):
                return True  # hard-removed while we read it
            e = store._objs[key] = Entry(m, version)
        elif e.version != version:
            return True  # changed since we read it: the live path owns it now
        for i, p, size in good:
            e.chunks.setdefault(i, ChunkRef(p, size))
            ck = chunk_key(key, i)
            if store._owned(ck) and store.disk.fits(size):
                victims += store._drop_victims_locked(store.disk.insert(ck, size, p))
    if victims:
        store._janitor.submit(store._unlink_victims, victims)
    return True


def _meta_fresh(d: str) -> bool:
    """True if a valid meta.json appeared in d since we looked (a concurrent put_meta)."""
    try:
        with open(f"{d}/{META_NAME}", "rb") as f:
            m = ObjectMeta.from_json(f.read())
    except (FileNotFoundError, ValueError):
        return False
    return key_hash(m.key) == os.path.basename(d)

