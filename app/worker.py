"""Base of the studio's workers: one thread per stage (capture, track, texture, record), DeepFaceLive-style,
each with its own stage timings and a message box the UI drains into the status bar.

Workers never touch Qt: they hand results over through thread-safe deques and LatestSlots, and the UI polls
them on a timer. So the UI never blocks on a worker, and a worker never waits for the UI.
"""
from __future__ import annotations

import collections
import logging
import threading

from app.stats import RateMeter, StageTimes

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, name: str):
        self.name = name
        self.times = StageTimes()
        self.rate = RateMeter()
        self.messages: collections.deque[str] = collections.deque(maxlen=50)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()

    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self._main, name=f"studio-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            self.run()
        except Exception as e:  # a worker bug must not take the app down: say it and stop this stage
            log.exception("%s worker failed", self.name)
            self.say(f"{self.name} stopped: {type(e).__name__}: {e}")

    def run(self) -> None:
        raise NotImplementedError

    def say(self, text: str) -> None:
        self.messages.append(text)

    def attempt(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs), or None when it raises. A failure is said once per run of failures (not on every
        frame); the stage goes on with the next item."""
        try:
            value = fn(*args, **kwargs)
        except Exception as e:
            if what not in self._failing:
                self.say(f"{what}: {type(e).__name__}: {e}")
            self._failing.add(what)
            return None
        self._failing.discard(what)
        return value

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when asked to stop meanwhile."""
        return self._stop.wait(seconds)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 3.0, wait: bool = True) -> None:
        self._stop.set()
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
