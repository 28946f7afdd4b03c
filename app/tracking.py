"""Track worker: newest frame → tracker → One Euro smoothing → expressions → stream / record / texture requests.

Everything the UI shows comes out of `outbox` (a bounded deque the UI drains on its timer). The tracker can be
swapped while running (package picker); a replayed frame carries its recorded result and skips tracking.

The performer's tuning (app.settings, per package) comes in through set_neutral, set_smoothing_params and
set_tuning; the ARKit values that are shown, streamed and recorded are the tuned ones (export.expressions.tune).
A calibration made here bumps `calibrations`, so the UI knows to save `neutral_state()`.
"""
from __future__ import annotations

import collections
import time

import numpy as np

from app.mailbox import LatestSlot
from app.results import Tracked
from app.smoothing import PoseSmoother
from app.worker import Worker
from engine.pose import project
from export.expressions import SIDES, ExpressionEstimator, expression_ranges, tune

# "Measure my range": how long the performer shows their widest expressions, one after another, in the studio
RANGE_SECONDS = 8.0
# export.expressions.RANGED in a performer's words
RANGE_WORDS = {"jawOpen": "jaw", "lipProtrusion": "pucker", "mouthSmile": "smile", "browInnerUp": "brows up",
               "browOuterUp": "outer brows up", "browDown": "frown", "eyeBlink": "blinks", "eyeBlinkIris": "blinks"}


def _ranges(tracker) -> dict:
    """A performer package's own expression range (export.ranges); {} (the average face's) for any other."""
    return getattr(getattr(tracker, "package", None), "expression_ranges", None) or {}


class TrackWorker(Worker):
    def __init__(self, slot: LatestSlot, tracker=None, clock=time.monotonic):
        super().__init__("track")
        self.slot, self._clock = slot, clock
        self.outbox: collections.deque[Tracked] = collections.deque(maxlen=32)  # the UI keeps up or loses old ones
        self.smoothing = True
        self.neutral_H = None         # the calibrated head pose, given to every sender (VMC head position)
        self.calibrations = 0         # bumped by each calibration taken from a frame
        self._sender = None           # app.senders Sender while streaming
        self.tuning: tuple[dict, dict] = ({}, {})   # per-shape (gains, dead zones); replaced whole, never edited
        self.recorder = None          # app.outputs.RecordWorker while recording
        self.texture = None           # app.outputs.TextureWorker when a package can decode textures
        self.estimator = ExpressionEstimator(ranges=_ranges(tracker))
        self.own_ranges: dict | None = None   # "Measure my range" (over the package's own); saved per package
        self.range_measures = 0       # bumped by each range measured here, so the UI knows to save own_ranges
        self._range_request: float | None = None   # seconds asked for (UI thread); the track thread starts it
        self._range = None            # (until, G list, eyes list) while measuring (track thread)
        self._smoother = PoseSmoother()
        self._tracker = tracker
        self._fresh = False            # set by set_tracker and restart: the next frame starts afresh (track thread)
        self._calibrate = False
        self.last: Tracked | None = None

    # -- controls (UI thread) ------------------------------------------------------------------------------
    def set_tracker(self, tracker) -> None:
        """Swap the tracker; the next frame uses it (one already in flight finishes on the old one). No lock: the
        track thread would take it again right after each frame, and Python's locks are not fair, so the UI thread
        could wait on it for minutes on a busy CPU (seen after "Make my model" switched packages)."""
        self._tracker = tracker
        self._fresh = True

    def restart(self) -> None:
        """A new source: the next frame starts with a detection, not from the old source's crop and the flow of its
        last frame (the track thread resets the tracker, as it owns it mid-frame)."""
        self._fresh = True

    @property
    def tracker(self):
        return self._tracker

    @property
    def sender(self):
        return self._sender

    @sender.setter
    def sender(self, sender) -> None:
        """A new stream starts from the calibrated head position, when there is one."""
        if sender is not None and self.neutral_H is not None:
            sender.calibrate(self.neutral_H)
        self._sender = sender

    def calibrate_neutral(self) -> None:
        """Take the next tracked face as the performer's resting face (expressions and VMC head position)."""
        self._calibrate = True

    def measure_range(self, seconds: float | None = None) -> None:
        """Take the next `seconds` (RANGE_SECONDS) of tracked faces as the performer's widest expressions: each
        measure they show (export.expressions.expression_ranges, from the calibrated neutral) reaches 1 there."""
        self._range_request = float(RANGE_SECONDS if seconds is None else seconds)

    def set_own_ranges(self, ranges: dict | None) -> None:
        """Restore a range measured here before (app.settings), or None: the package's own, else the average face's.
        A range in progress is dropped."""
        self._range = self._range_request = None
        self.own_ranges = None if ranges is None else dict(ranges)
        self.estimator.set_ranges(self._effective_ranges(self._tracker))

    def _effective_ranges(self, tracker) -> dict:
        return {**_ranges(tracker), **(self.own_ranges or {})}

    def neutral_state(self) -> dict:
        """The current neutral as JSON-able data: the estimator's measures and eyes, and the head pose or None."""
        state = self.estimator.neutral_state()
        state["head"] = None if self.neutral_H is None else [float(v) for v in self.neutral_H]
        return state

    def set_neutral(self, state: dict | None) -> None:
        """Restore a saved neutral (`neutral_state()`'s form), or None: the default face, no head pose. A sender
        that is streaming keeps the head position it has (a new stream starts from the restored one)."""
        if state is None:
            self.estimator.reset_neutral()
            self.neutral_H = None
            return
        self.estimator.set_neutral_state(state)
        head = state.get("head")
        self.neutral_H = None if head is None else np.asarray(head, np.float64)
        if head is not None and (sender := self._sender) is not None:
            sender.calibrate(self.neutral_H)

    def set_smoothing(self, on: bool) -> None:
        self.smoothing = on
        self._smoother.reset()

    def set_smoothing_params(self, min_cutoff: float, beta: float) -> None:
        """The performer's One Euro pair (app.smoothing); the filter restarts (a swap, safe mid-frame)."""
        self._smoother = PoseSmoother(min_cutoff, beta)

    def set_tuning(self, gains: dict, dead_zones: dict) -> None:
        self.tuning = (dict(gains), dict(dead_zones))

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
        tracker = self._tracker                     # one read: a swap mid-frame takes effect on the next one
        if self._fresh:                             # a new tracker or source: no smoothing, crop or flow carried over
            self._fresh = False
            self._smoother.reset()
            self.estimator.set_ranges(self._effective_ranges(tracker))
            if hasattr(tracker, "reset"):
                tracker.reset()
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
        # a tracker without a latent (the generic package) records an empty z: the frame is still a found one
        z = np.zeros(0, np.float32) if result.z is None else np.asarray(result.z)
        item.raw_G, item.z, item.presence = G, z, float(getattr(result, "presence", 1.0))
        if self.smoothing and not frame.replayed:
            # where the teacher sees the face differs from G's projection by a package's view bias: kept on the
            # smoothed face, so the overlay stays on the image (engine.view_bias; ~0 without one)
            seen = np.asarray(result.points) - project(np.asarray(result.G, np.float64), H)
            G, H = self._smoother(G, H, frame.t)   # one read of the attribute: a swap lands between frames
            item.points = project(G.astype(np.float64), H) + seen
        else:
            item.points = np.asarray(result.points)
        item.G, item.H = G, H
        eyes = getattr(result, "eyes", None)   # iris-model eyelids and gaze, when the package has the iris graph
        if self._calibrate:
            self._calibrate = False
            self.estimator.calibrate(G, eyes)
            self.neutral_H = np.array(H, np.float64)
            if (sender := self._sender) is not None:
                sender.calibrate(H)
            self.calibrations += 1
            self.say("neutral face calibrated")
        if not frame.replayed:
            self._measure_range(frame.t, G, eyes)
        recorded = getattr(result, "expressions", None)   # a replayed frame's values were tuned when recorded
        item.expressions = recorded if recorded is not None else tune(self.estimator(G, eyes=eyes), *self.tuning)
        item.gaze = self.estimator.last_gaze if recorded is None and eyes is not None else None
        stages["smooth+expr"] = (self._clock() - t) * 1e3
        self._outputs(item, stages)

    def _measure_range(self, t: float, G: np.ndarray, eyes) -> None:
        if (seconds := self._range_request) is not None:
            self._range_request = None
            self._range = (t + seconds, [], [])
            self.say(f"measuring your range: your widest jaw, smile, pucker, brows and blinks for {seconds:g} s")
        if self._range is None:
            return
        until, faces, eyes_seen = self._range
        faces.append(G)
        eyes_seen.append(eyes)
        if t < until:
            return
        self._range = None
        rest = {side: self.estimator.neutral_eyes[side]["aperture"] for side in SIDES}
        measured = expression_ranges(np.stack(faces), eyes_seen, self.estimator.neutral, rest)
        if not measured:
            self.say("no expression was wide enough to measure: the range is as it was")
            return
        self.own_ranges = {**(self.own_ranges or {}), **measured}
        self.estimator.set_ranges(self._effective_ranges(self._tracker))
        self.range_measures += 1
        words = dict.fromkeys(RANGE_WORDS[key] for key in measured if key in RANGE_WORDS)   # in order, once each
        self.say(f"range measured ({', '.join(words)}): 1 is now your widest")

    def _outputs(self, item: Tracked, stages: dict) -> None:
        if (sender := self.sender) is not None:
            t = self._clock()
            sender.send(item.H, item.expressions, gaze=item.gaze)
            stages["stream"] = (self._clock() - t) * 1e3
        if (recorder := self.recorder) is not None and not item.frame.replayed:
            recorder.put(item)
        if (texture := self.texture) is not None:
            texture.request(item.z, item.H)
