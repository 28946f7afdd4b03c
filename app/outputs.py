"""Workers behind the track worker: texture decoding (rate-limited) and session recording (disk-bound).

Both run on their own threads so neither a slow decoder nor a slow disk holds tracking up.
"""
from __future__ import annotations

import errno
import queue
import time
from datetime import datetime
from pathlib import Path

from app.mailbox import LatestSlot
from app.recording import SessionRecorder
from app.worker import Worker


class TextureWorker(Worker):
    """Decodes the colour-corrected texture C(T) of the newest (z, H) at most `max_hz` times a second.

    `tracker.texture` runs here, on another thread than `tracker(frame)`: the runtime's sessions must allow
    that (onnxruntime's InferenceSession.run does)."""

    def __init__(self, tracker, max_hz: float = 4.0, clock=time.monotonic):
        super().__init__("texture")
        self.tracker, self.max_hz, self._clock = tracker, max_hz, clock
        self.corrected = True
        self._slot = LatestSlot()
        self.latest = None  # (texture [S,S,3] uint8, corrected: bool), replaced by each decode
        self.count = 0

    def request(self, z, H) -> None:
        self._slot.put((z, H))

    def pop(self):
        """The newest decoded texture not yet shown, or None."""
        item, self.latest = self.latest, None
        return item

    def run(self) -> None:
        while not self.stopping:
            job = self._slot.take(timeout=0.1)
            if job is None:
                continue
            t0 = self._clock()
            corrected = self.corrected
            tex = self.attempt("texture decoding failed", self.tracker.texture, *job, corrected=corrected)
            ms = (self._clock() - t0) * 1e3
            self.times.add({"texture": ms})
            if tex is not None:
                self.latest, self.count = (tex, corrected), self.count + 1
                self.rate.tick()
            self.wait(max(0.0, 1.0 / self.max_hz - ms / 1e3))


def session_folder(parent: str | Path, clock=datetime.now) -> Path:
    """A new, time-stamped session folder under `parent`, created here and now (mkdir without exist_ok), so two
    recorders started in the same second, in one process or two, never get the same folder: the one that loses
    the race takes the next name (session-STAMP-2, -3, ...)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = clock().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        path = parent / (f"session-{stamp}" if n == 1 else f"session-{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no free session folder name", str(parent / f"session-{stamp}"))


class RecordWorker(Worker):
    """Writes tracked frames (the video frame, z, H, expressions, G) into a session folder.

    Every frame is written, a frame with no face as a no-face line, so video frame i and result line i always
    belong together; the replay paces itself by the recorded times. The recorder opens on the first frame (its size is known then).
    A full queue (disk far too slow) drops frames and counts them rather than stall tracking."""

    def __init__(self, folder: str | Path, fps: float, max_queue: int = 256):
        super().__init__("record")
        self.folder, self.fps = Path(folder), fps
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._recorder: SessionRecorder | None = None
        self.dropped = 0
        self.written = 0
        self.failed: str | None = None   # why the recording stopped on its own (the UI unticks Recording)

    def put(self, item) -> None:
        if self.failed:                     # a dead recorder takes nothing more (the UI stops it next tick)
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def run(self) -> None:
        try:
            while not (self.stopping and self._queue.empty()):  # on stop, finish what was queued
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._write(item)
        except Exception as err:  # noqa: BLE001 (disk full, folder gone, encoder died): the recording ends here
            self.failed = f"recording stopped: {self.folder}: {type(err).__name__}: {err}"
            self.say(self.failed)
        finally:
            if self._recorder is not None:
                try:
                    self._recorder.close()
                except Exception as err:  # noqa: BLE001 (the session still gets its manifest)
                    self.failed = self.failed or f"recording stopped: {self.folder}: {err}"
                    self.say(f"session closed with an error: {self.folder}: {err}")
                else:
                    self.say(f"session saved: {self.folder} ({self.written} frames)")
            else:
                try:
                    self.folder.rmdir()    # no frame came: leave no empty session behind
                except OSError:
                    pass

    def _write(self, item) -> None:
        image = item.frame.image
        if self._recorder is None:
            self._recorder = SessionRecorder(self.folder, self.fps, (image.shape[1], image.shape[0]))
            self.say(f"recording to {self.folder}")
        t0 = time.monotonic()
        self._recorder.write(image, item.frame.t, item.z, item.H, item.expressions, G=item.G)
        self.times.add({"record": (time.monotonic() - t0) * 1e3})
        self.written += 1
        self.rate.tick()

    def stop(self, timeout: float = 30.0, wait: bool = True) -> None:
        super().stop(timeout, wait)  # a generous wait: the encoder flushes its last frames
