"""Capture worker: reads the source into a LatestSlot; paces files to their fps; reconnects lost sources.

Taps (callables given every captured Frame, on this thread) see each frame, also those the tracker never gets
because a newer one replaced it in the slot: a recorder of the raw video (app.guided) needs them all. A tap
must be quick (hand the frame to its own thread); one that raises is reported and skipped for that frame."""
from __future__ import annotations

import time

from app.mailbox import LatestSlot
from app.worker import Worker


class CaptureWorker(Worker):
    RECONNECT_S = 1.0  # poll a lost camera (or missing file) this often

    def __init__(self, source, slot: LatestSlot, clock=time.monotonic, taps: tuple = ()):
        super().__init__("capture")
        self.source, self.slot, self._clock = source, slot, clock
        self.taps = tuple(taps)  # replaced whole (never mutated), so the loop reads a consistent set
        self.connected = False
        self.frames = 0

    def _open(self, was_lost: bool) -> bool:
        """Try to open the source; after a loss stay quiet until it is back, then say so."""
        try:
            self.source.open()
        except Exception as e:  # SourceError, or whatever a driver throws: never fatal
            if not was_lost:
                self.say(f"{self.source.name}: {e}; retrying every second")
            return False
        self.connected = True
        if was_lost:
            self.say(f"{self.source.name} reconnected")
        return True

    def run(self) -> None:
        lost = False  # after the first failure, retry quietly until the source is back
        next_t = None
        while not self.stopping:
            if not self.connected:
                if not self._open(lost):
                    lost = True
                    self.wait(self.RECONNECT_S)
                    continue
                lost, next_t = False, self._clock()
            t0 = self._clock()
            try:
                frame = self.source.read()
            except Exception as e:
                self.say(f"{self.source.name} lost ({e}); reconnecting…")
                self._close()
                lost = True
                self.wait(self.RECONNECT_S)
                continue
            self.times.add({"capture": (self._clock() - t0) * 1e3})
            self.rate.tick()
            self.frames += 1
            for tap in self.taps:
                self.attempt("frame tap", tap, frame)
            self.slot.put(frame)
            if not getattr(self.source, "paced", True):  # a file: play at its fps, not as fast as it decodes
                next_t += 1.0 / self.source.fps
                delay = next_t - self._clock()
                if delay > 0:
                    self.wait(delay)
                elif delay < -0.25:  # decoding fell behind: restart the clock rather than burst
                    next_t = self._clock()
        self._close()

    def _close(self) -> None:
        self.connected = False
        try:
            self.source.close()
        except Exception:
            pass
