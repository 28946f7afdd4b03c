"""What flows from the track worker to the UI, recorder and streamer.

A tracker's own per-frame answer is engine.tracking.FaceResult (the one result type: every tracker, the replay
and the demo tracker return it).
`Tracked` is one processed frame as the UI sees it: the frame, the (smoothed) face or None, and timings.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.sources import Frame


@dataclass
class Tracked:
    frame: Frame
    G: np.ndarray | None = None         # shown/streamed/recorded: smoothed when smoothing is on
    H: np.ndarray | None = None
    points: np.ndarray | None = None    # projection of (G, H) in frame pixels
    z: np.ndarray | None = None
    raw_G: np.ndarray | None = None     # the tracker's own output, for the raw-vs-smoothed stability plot
    presence: float = 0.0
    expressions: dict = field(default_factory=dict)
    gaze: dict | None = None            # per eye (yaw, pitch) rad for the sender's eye bones; None without eyes
    stages_ms: dict = field(default_factory=dict)  # tracker stages + ours (track, smooth, stream, latency)
    dropped: int = 0                    # stale frames dropped so far (capture → track)

    @property
    def found(self) -> bool:
        return self.G is not None
