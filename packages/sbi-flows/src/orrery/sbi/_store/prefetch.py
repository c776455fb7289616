"""A one-thread background prefetch of an iterator, with a bounded queue."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_DONE = object()


def prefetch(produce: Callable[[], Iterator[Any]], depth: int = 1) -> Iterator[Any]:
    """Yield the items of ``produce()`` computed ahead in a background thread.

    At most ``depth`` items wait in the queue (plus the one the thread is making),
    so memory stays bounded. An exception in the thread is re-raised here; when the
    consumer stops early the thread is told to stop and joined.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce():
                if not put(("item", item)):
                    return
            put(("done", _DONE))
        except BaseException as err:  # handed to the consumer
            put(("error", err))

    thread = threading.Thread(target=run, name="orrery-sbi-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = items.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
            del item
    finally:
        stop.set()
        thread.join()
