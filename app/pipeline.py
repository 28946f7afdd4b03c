"""The live pipeline without any UI: source → capture worker → LatestSlot → track worker → outputs.

The main window (or a test) owns one Pipeline, changes its source, tracker and outputs from the UI thread, and
drains `take()` on a timer. Swapping the source replaces only the capture worker; the rest keeps running.
"""
from __future__ import annotations

from app.capture import CaptureWorker
from app.mailbox import LatestSlot
from app.outputs import RecordWorker, TextureWorker, session_folder
from app.tracking import TrackWorker
from app.senders import open_sender


class Pipeline:
    def __init__(self, tracker=None, texture_hz: float = 4.0):
        self.slot = LatestSlot()
        self.capture: CaptureWorker | None = None
        self.track = TrackWorker(self.slot).start()
        self.texture: TextureWorker | None = None
        self.recording: RecordWorker | None = None
        self.texture_hz = texture_hz
        self._old: list = []  # stopped workers whose messages are still to be shown
        self._taps: tuple = ()  # callables given every captured frame (app.capture), kept across sources
        self.set_tracker(tracker)

    # -- configuration (UI thread) ---------------------------------------------------------------------------
    def set_source(self, source) -> None:
        if self.capture is not None:
            self.capture.stop()
            self._old.append(self.capture)
        self.stop_recording()  # a session holds one source's frames (one frame size)
        self.slot.clear()
        self.track.restart()   # the new source's face is found afresh
        self.capture = CaptureWorker(source, self.slot, taps=self._taps).start() if source is not None else None

    def add_tap(self, fn) -> None:
        """fn(frame) for every captured frame from now on, on the capture thread (it must not block)."""
        self._set_taps((*self._taps, fn))

    def remove_tap(self, fn) -> None:
        self._set_taps(tuple(t for t in self._taps if t != fn))   # ==: a bound method is a new object each time

    def _set_taps(self, taps: tuple) -> None:
        self._taps = taps
        if self.capture is not None:
            self.capture.taps = taps

    @property
    def source(self):
        return None if self.capture is None else self.capture.source

    def set_tracker(self, tracker) -> None:
        if self.texture is not None:
            self.texture.stop()
            self._old.append(self.texture)
            self.texture = None
        self.track.texture = None
        if tracker is not None and hasattr(tracker, "texture"):
            self.texture = TextureWorker(tracker, self.texture_hz).start()
        self.track.set_tracker(tracker)
        self.track.texture = self.texture

    @property
    def tracker(self):
        return self.track.tracker

    def start_stream(self, host: str, port: int, protocol: str = "vmc", expressions: str = "both") -> None:
        """Stream through app.senders (one interface for every protocol); `expressions` is VMC's name set."""
        self.stop_stream()
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host      # IPv6 in a spec
        self.track.sender = open_sender(f"{protocol}:{host}:{port}", expressions=expressions)

    def stop_stream(self) -> None:
        sender, self.track.sender = self.track.sender, None
        if sender is not None:
            sender.close()

    def start_recording(self, parent_dir) -> RecordWorker:
        self.stop_recording()
        fps = getattr(self.source, "fps", 30.0) or 30.0
        self.recording = RecordWorker(session_folder(parent_dir), fps).start()
        self.track.recorder = self.recording
        return self.recording

    def stop_recording(self, wait: bool = True):
        """Stop the session; its worker writes the queued frames and closes it (wait=False: in the background,
        it says "session saved" when done). Returns the session folder or None."""
        rec, self.recording = self.recording, None
        self.track.recorder = None
        if rec is None:
            return None
        rec.stop(wait=wait)
        self._old.append(rec)
        return rec.folder

    # -- polling (UI thread) -----------------------------------------------------------------------------
    def workers(self) -> list:
        return [w for w in (self.capture, self.track, self.texture, self.recording) if w is not None]

    def take(self) -> list:
        """Tracked frames since the last call (oldest first)."""
        out = []
        while self.track.outbox:
            out.append(self.track.outbox.popleft())
        return out

    def messages(self) -> list[str]:
        out = []
        for w in self._old + self.workers():
            while w.messages:
                out.append(w.messages.popleft())
        self._old = [w for w in self._old if w.alive or w.messages]
        return out

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    def stop(self) -> None:
        self.stop_recording()
        self.stop_stream()
        for w in (self.capture, self.texture, self.track):
            if w is not None:
                w.stop()
