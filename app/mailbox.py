"""Hand-over between workers that never lets a fast producer queue work behind a slow consumer."""
from __future__ import annotations

import threading


class LatestSlot:
    """Holds one item. `put` replaces an item nobody took (counted in `dropped`): a consumer that falls behind
    gets the newest frame, never a backlog of stale ones."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._full = False
        self.dropped = 0
        self.delivered = 0

    def put(self, item) -> None:
        with self._cond:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()

    def take(self, timeout: float | None = None):
        """The newest item, or None when none arrives within `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full, timeout):
                return None
            item, self._item, self._full = self._item, None, False
            self.delivered += 1
            return item

    def clear(self) -> None:
        with self._cond:
            self._item, self._full = None, False
