"""The live video with the tracked mesh drawn over it (QImage + QPainter; the frame is scaled to fit).

`overlay` turns the mesh off; `mirror` flips the picture (and the mesh with it) for a performer who expects a
mirror. Both are display only: the tracked points, the stream and the recording are never mirrored.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget


def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """Unique undirected edges [E,2] of a triangle list."""
    t = np.asarray(triangles, np.int64)
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0)


def to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage sharing `rgb`'s memory (keep the array alive while the image is used)."""
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888)


class VideoView(QWidget):
    EDGE = QColor(80, 255, 140, 150)
    POINT = QColor(255, 230, 80, 200)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self._rgb = None
        self._points = None
        self.edges: np.ndarray | None = None  # None: draw the points only
        self.caption = "no source"
        self.overlay = True
        self.mirror = False
        self.mesh_drawn = False               # whether the last paint drew a mesh (tests)

    def set_topology(self, triangles) -> None:
        self.edges = mesh_edges(triangles)

    def set_overlay(self, on: bool) -> None:
        self.overlay = on
        self.update()

    def set_mirror(self, on: bool) -> None:
        self.mirror = on
        self.update()

    def show_frame(self, rgb: np.ndarray, points: np.ndarray | None, caption: str = "") -> None:
        self._rgb = np.ascontiguousarray(rgb)
        self._points = None if points is None else np.asarray(points, np.float64)
        self.caption = caption
        self.update()

    def _fit(self) -> QRectF:
        h, w = self._rgb.shape[:2]
        s = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * s) / 2, (self.height() - h * s) / 2, w * s, h * s)

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 24, 28))
        if self._rgb is not None:
            box = self._fit()
            if self.mirror:             # reflect about the picture's centre line: image and mesh flip together
                p.translate(box.x() * 2 + box.width(), 0)
                p.scale(-1, 1)
            p.drawImage(box, to_qimage(self._rgb))
            self.mesh_drawn = self.overlay and self._points is not None
            if self.mesh_drawn:
                self._draw_mesh(p, box)
            p.resetTransform()          # the caption reads the right way round
        p.setPen(QColor(230, 230, 230))
        p.drawText(self.rect().adjusted(8, 6, -8, -6), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
                   self.caption)
        p.end()

    def _draw_mesh(self, p: QPainter, box: QRectF) -> None:
        s = box.width() / self._rgb.shape[1]
        xy = self._points * s + (box.x(), box.y())  # pixel centres: the tracker's points are in frame pixels
        if self.edges is not None:
            p.setPen(QPen(self.EDGE, 1.0))
            a, b = xy[self.edges[:, 0]], xy[self.edges[:, 1]]
            p.drawLines([QLineF(*pa, *pb) for pa, pb in zip(a.tolist(), b.tolist())])
        else:
            p.setPen(QPen(self.POINT, 2.0))
            p.drawPoints([QPointF(x, y) for x, y in xy.tolist()])
