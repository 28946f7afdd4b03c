"""Replay a recorded session folder as a source: its video frames, paced by the recorded times, each carrying
its recorded result (so the track worker shows it without tracking). Loops at the end."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from app.recording import VIDEO, load_session
from app.sources import Frame, SourceError
from engine.canonical import load as canonical_shape
from engine.pose import project
from engine.tracking import FaceResult


class SessionSource:
    paced = True  # it sleeps to the recorded times itself

    def __init__(self, folder: str | Path, loop: bool = True, clock=time.monotonic, sleep=time.sleep):
        self.folder, self.loop = Path(folder), loop
        self.name = f"replay:{self.folder.name}"
        self.session = None
        self.fps = 30.0
        self._clock, self._sleep = clock, sleep
        self._cap = None
        self._i = 0
        self._start = 0.0

    def open(self) -> None:
        try:
            self.session = load_session(self.folder)
        except (OSError, ValueError, KeyError) as e:
            raise SourceError(f"{self.folder} is not a readable session ({e})") from None
        if len(self.session) == 0:
            raise SourceError(f"{self.folder}: the session has no frames")
        cap = cv2.VideoCapture(str(self.folder / VIDEO))
        if not cap.isOpened():
            raise SourceError(f"{self.folder / VIDEO} cannot be decoded")
        self.fps = float(self.session.manifest.get("fps") or 30.0)
        self._cap, self._i, self._start = cap, 0, self._clock()

    def result(self, i: int) -> FaceResult | None:
        """The recorded result of frame i (without recorded vertices: the canonical face in the recorded pose);
        None where the session recorded no face."""
        s = self.session
        if s.found is not None and not s.found[i]:
            return None
        G = s.G[i] if s.G is not None and not np.isnan(s.G[i]).any() else canonical_shape()[0]
        H = s.H[i]
        r = FaceResult(G=G, points=project(G.astype(np.float64), H), H=H, z=s.z[i])
        r.expressions = s.expressions(i)
        return r

    def read(self) -> Frame:
        if self._cap is None:
            raise SourceError(f"{self.name} is closed")
        s = self.session
        if self._i >= len(s):
            if not self.loop:
                raise SourceError(f"{self.name}: end of session")
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._i, self._start = 0, self._clock()
        ok, bgr = self._cap.read()
        if not ok:  # the video is shorter than the results (a recorder killed mid-write): loop early
            if not self.loop or self._i == 0:
                raise SourceError(f"{self.name}: the video ends before the recorded results")
            self._i = len(s)
            return self.read()
        delay = self._start + (s.t[self._i] - s.t[0]) - self._clock()
        if delay > 0:
            self._sleep(delay)
        i, self._i = self._i, self._i + 1
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._clock(), i, replayed=True, recorded=self.result(i))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
