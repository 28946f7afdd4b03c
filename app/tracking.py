"""Track worker: newest frame → tracker → One Euro smoothing → expressions → stream / record / texture requests.

Everything the UI shows comes out of `outbox` (a bounded deque the UI drains on its timer). The tracker can be
swapped while running (package picker); a replayed frame carries its recorded result and skips tracking.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np

from app.mailbox import LatestSlot
from app.results import Tracked
from app.smoothing import PoseSmoother
from app.worker import Worker
from engine.pose import project
from export.expressions import ExpressionEstimator


class TrackWorker(Worker):
    def __init__(self, slot: LatestSlot, tracker=None, clock=time.monotonic):
        super().__init__("track")
        self.slot, self._clock = slot, clock
        self.outbox: collections.deque[Tracked] = collections.deque(maxlen=32)  # the UI keeps up or loses old ones
        self.smoothing = True
        self.sender = None            # app.vmc.VMCSender while streaming
        self.recorder = None          # app.outputs.RecordWorker while recording
        self.texture = None           # app.outputs.TextureWorker when a package can decode textures
        self.estimator = ExpressionEstimator()
        self._smoother = PoseSmoother()
        self._lock = threading.Lock()  # guards the tracker swap against a frame in flight
        self._tracker = tracker
        self._calibrate = False
        self.last: Tracked | None = None

    # -- controls (UI thread) ------------------------------------------------------------------------------
    def set_tracker(self, tracker) -> None:
        with self._lock:
            self._tracker = tracker
            self._smoother.reset()

    @property
    def tracker(self):
        return self._tracker

    def calibrate_neutral(self) -> None:
        """Take the next tracked face as the performer's resting face (expressions and VMC head position)."""
        self._calibrate = True

    def set_smoothing(self, on: bool) -> None:
        self.smoothing = on
        self._smoother.reset()

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping:
            frame = self.slot.take(timeout=0.1)
            if frame is None:
                continue
            # a tracker error on one frame is reported once, and tracking goes on
            item = self.attempt("tracking error", self.process, frame)
            if item is None:
                item = Tracked(frame=frame, dropped=self.slot.dropped)
            self.last = item
            self.outbox.append(item)
            self.rate.tick()

    def process(self, frame) -> Tracked:
        stages: dict[str, float] = {}
        t0 = self._clock()
        item = Tracked(frame=frame, dropped=self.slot.dropped)
        with self._lock:
            tracker = self._tracker
            if frame.replayed:
                result = frame.recorded
            elif tracker is not None:
                result = tracker(frame.image)
                stages.update(getattr(result, "stages_ms", None) or {})
            else:
                result = None
        stages["track"] = (self._clock() - t0) * 1e3
        if result is None:
            self._smoother.reset()  # the next face starts fresh (the tracker re-detects)
            if (sender := self.sender) is not None and not frame.replayed:
                sender.send_lost()  # receivers see tracking loss (VMC's OK state), not a frozen face
            if (recorder := self.recorder) is not None and not frame.replayed:
                recorder.put(item)  # a no-face line keeps the session's lines in step with its video
        else:
            self._fill(item, result, frame, stages)
        stages["latency"] = (self._clock() - frame.t) * 1e3  # capture → result, the number a performer feels
        item.stages_ms = stages
        self.times.add(stages)
        return item

    def _fill(self, item: Tracked, result, frame, stages: dict) -> None:
        t = self._clock()
        G = np.asarray(result.G, np.float32)
        H = np.asarray(result.H, np.float64)
        item.raw_G, item.z, item.presence = G, np.asarray(result.z), float(getattr(result, "presence", 1.0))
        if self.smoothing and not frame.replayed:
            G, H = self._smoother(G, H, frame.t)
            item.points = project(G.astype(np.float64), H)
        else:
            item.points = np.asarray(result.points)
        item.G, item.H = G, H
        eyes = getattr(result, "eyes", None)   # iris-model eyelids and gaze, when the package has the iris graph
        if self._calibrate:
            self._calibrate = False
            self.estimator.calibrate(G, eyes)
            if self.sender is not None:
                self.sender.calibrate(H)
            self.say("neutral face calibrated")
        recorded = getattr(result, "expressions", None)
        item.expressions = recorded if recorded is not None else self.estimator(G, eyes=eyes)
        item.gaze = self.estimator.last_gaze if recorded is None and eyes is not None else None
        stages["smooth+expr"] = (self._clock() - t) * 1e3
        self._outputs(item, stages)

    def _outputs(self, item: Tracked, stages: dict) -> None:
        if (sender := self.sender) is not None:
            t = self._clock()
            sender.send(item.H, item.expressions, gaze=item.gaze)
            stages["stream"] = (self._clock() - t) * 1e3
        if (recorder := self.recorder) is not None and not item.frame.replayed:
            recorder.put(item)
        if (texture := self.texture) is not None:
            texture.request(item.z, item.H)
