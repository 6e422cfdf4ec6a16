"""One lock per instance uuid (nova's ``@utils.synchronized(instance.uuid)``): operations on the
same instance run one after the other, operations on different instances in parallel. A lock
exists only while someone holds or waits for it. One registry per host: start-up's repairs
(ComputeManager.init_host) and the RPC operations share it."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class InstanceLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # uuid -> [lock, users]

    @contextmanager
    def lock(self, uuid: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(uuid, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[uuid]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)

    def holders(self, uuid: str) -> int:
        """How many threads hold or wait for the instance's lock now."""
        with self._guard:
            entry = self._locks.get(uuid)
            return entry[1] if entry is not None else 0
