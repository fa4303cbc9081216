"""One background thread for the store's slow chores (unlinks, old-version cleanup, promotion
reads), so eviction and cleanup never run on the serving path."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Janitor:
    def __init__(self, name: str = "edge-store-janitor") -> None:
        self._q: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._q.put((fn, args))

    def flush(self) -> None:
        """Block until every job submitted so far (and those they submitted) has run."""
        self._q.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            job = self._q.get()
            try:
                if job is None:
                    return
                fn, args = job
                try:
                    fn(*args)
                except Exception:
                    log.exception("store background job %s failed", getattr(fn, "__name__", fn))
            finally:
                self._q.task_done()
