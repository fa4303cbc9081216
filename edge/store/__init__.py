"""The edge's two-tier chunk storage (memory + disk), crash-safe and shared by workers.

See store.py for the rules; layout.py for where files live.
"""

from edge.store.fsio import DiskFull
from edge.store.meta import ObjectMeta
from edge.store.refs import ChunkRef
from edge.store.store import Store, StoreConfig
from edge.store.writer import ChunkWriter

__all__ = ["ChunkRef", "ChunkWriter", "DiskFull", "ObjectMeta", "Store", "StoreConfig"]
