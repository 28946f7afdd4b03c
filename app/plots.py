"""pyqtgraph panels: rolling line plots of named series over the last `window` seconds (x: seconds ago).

Values are pushed per frame into ring buffers (cheap); curves are redrawn by `refresh()` on the UI timer.
"""
from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg

COLOURS = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#90a4ae", "#f06292"]


class RollingPlot(pg.PlotWidget):
    def __init__(self, units: str = "", window: float = 10.0, length: int = 600, y_range=None, parent=None,
                 clock=time.monotonic):
        super().__init__(parent=parent)
        self.window, self.length, self._clock = window, length, clock
        self.setLabel("left", units)
        self.setLabel("bottom", "seconds ago")
        self.showGrid(x=True, y=True, alpha=0.2)
        self.addLegend(offset=(5, 5), labelTextSize="8pt")
        self.setMouseEnabled(x=False, y=True)
        self.setXRange(-window, 0, padding=0)
        if y_range is not None:
            self.setYRange(*y_range)
        self._t: dict[str, np.ndarray] = {}
        self._v: dict[str, np.ndarray] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}

    def push(self, values: dict[str, float | None], t: float | None = None) -> None:
        """One sample per named series at time t (default now); None leaves a gap."""
        t = self._clock() if t is None else t
        for name, v in values.items():
            if name not in self._v:
                self._t[name] = np.full(self.length, np.nan)
                self._v[name] = np.full(self.length, np.nan)
                colour = COLOURS[len(self._curves) % len(COLOURS)]
                self._curves[name] = self.plot(name=name, pen=pg.mkPen(colour, width=1.5), connect="finite")
            for buf, x in ((self._t[name], t), (self._v[name], np.nan if v is None else float(v))):
                buf[:-1] = buf[1:]
                buf[-1] = x

    def refresh(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        for name, curve in self._curves.items():
            keep = self._t[name] >= now - self.window
            curve.setData(self._t[name][keep] - now, self._v[name][keep])

    def latest(self, name: str) -> float | None:
        buf = self._v.get(name)
        return None if buf is None or np.isnan(buf[-1]) else float(buf[-1])
