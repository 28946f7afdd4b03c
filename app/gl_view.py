"""ModernGL view of the decoded textured mesh in Qt's GL context, with an orbit camera.

Drag rotates (yaw/pitch around the face), the wheel zooms. The face is drawn from G (canonical cm), turned by
the tracked head rotation (when `follow_head`) and then by the orbit, centred and scaled to the widget; the
renderer (engine.render.MeshRenderer) takes image-space vertices, so the orbit is just a different H.
Modes: "textured" (the texture as decoded, unlit), "shaded" (plain grey + a key light: the geometry),
"wireframe". Colour correction is chosen where the texture is decoded (TextureWorker.corrected).
"""
from __future__ import annotations

import logging
import math

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QGuiApplication, QOpenGLContext, QSurfaceFormat
from PySide6.QtOpenGLWidgets import QOpenGLWidget

from engine.pose import rotation_matrix
from engine.render import FLAT, Lighting

log = logging.getLogger(__name__)

BACKGROUND = (0.11, 0.11, 0.13)
PLAIN = np.full((4, 4, 3), 200, np.uint8)  # the "shaded"/"wireframe" albedo, and the texture until one arrives
SHADED = Lighting(ambient=(0.35, 0.35, 0.35), key=(0.75, 0.75, 0.75), direction=(-0.4, -0.5, -1.0))
MODES = ("textured", "shaded", "wireframe")
FACE_EXTENT_CM = 22.0  # a face (forehead to chin, cheek to cheek) fits in this at zoom 1


def gl_available() -> bool:
    """Whether Qt can make an OpenGL 3.3 context here for a window. Not on the offscreen platform: there a context
    can still be created (through the X display when one is set), but the widget has no surface to draw on."""
    if QGuiApplication.platformName() == "offscreen":
        return False
    ctx = QOpenGLContext()
    ctx.setFormat(surface_format())
    return bool(ctx.create())


def surface_format() -> QSurfaceFormat:
    fmt = QSurfaceFormat()
    fmt.setVersion(3, 3)
    fmt.setProfile(QSurfaceFormat.OpenGLContextProfile.CoreProfile)
    fmt.setDepthBufferSize(24)
    return fmt


class FaceGLView(QOpenGLWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFormat(surface_format())
        self.setMinimumSize(240, 240)
        self.ctx = self.renderer = None
        self.error: str | None = None
        self.mode = "textured"
        self.follow_head = True
        self.yaw = self.pitch = 0.0  # orbit, radians
        self.zoom = 1.0
        self._drag: QPointF | None = None
        self._G = self._H = None
        self._topology = None       # (triangles, uv) waiting for the context
        self._texture = None        # the latest decoded texture (kept to restore after the plain modes)
        self._uploaded = None       # the array the renderer holds now
        self._has_mesh = False
        self.frames_drawn = 0

    # -- data (UI thread; applied in paintGL where the context is current) -------------------------------------
    def set_topology(self, triangles, uv, holes=None) -> None:
        tris = np.asarray(triangles, np.int32)
        if holes is not None and len(holes):  # fill eyes and mouth: a closed face reads better in 3D
            tris = np.concatenate([tris, np.asarray(holes, np.int32)])
        self._topology = (tris, np.asarray(uv, np.float32))
        self.update()

    def set_texture(self, texture: np.ndarray) -> None:
        self._texture = texture
        self.update()

    def set_face(self, G, H) -> None:
        self._G = None if G is None else np.asarray(G, np.float64)
        self._H = None if H is None else np.asarray(H, np.float64)
        self.update()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.update()

    # -- orbit camera ------------------------------------------------------------------------------------------
    def mousePressEvent(self, e) -> None:
        self._drag = e.position()

    def mouseMoveEvent(self, e) -> None:
        if self._drag is None:
            return
        d = e.position() - self._drag
        self._drag = e.position()
        self.yaw += d.x() * 0.01
        self.pitch = float(np.clip(self.pitch - d.y() * 0.01, -1.4, 1.4))
        self.update()

    def mouseReleaseEvent(self, e) -> None:
        self._drag = None

    def mouseDoubleClickEvent(self, e) -> None:
        self.yaw = self.pitch = 0.0
        self.zoom = 1.0
        self.update()

    def wheelEvent(self, e) -> None:
        self.zoom = float(np.clip(self.zoom * math.pow(1.0015, e.angleDelta().y()), 0.2, 8.0))
        self.update()

    def view_vertices(self, width: int, height: int) -> np.ndarray:
        """Image-space vertices [V,3] of the current face for a (width, height) view."""
        G = self._G - self._G.mean(0)
        R = rotation_matrix(np.array([self.pitch, self.yaw, 0.0]))
        if self.follow_head and self._H is not None:
            R = R @ rotation_matrix(self._H[1:4])
        s = self.zoom * min(width, height) / FACE_EXTENT_CM
        return (s * G @ R.T + (width / 2, height / 2, 0.0)).astype(np.float32)

    # -- GL --------------------------------------------------------------------------------------------------
    def initializeGL(self) -> None:
        try:
            import moderngl

            from engine.render import MeshRenderer

            self.ctx = moderngl.create_context()
            self.renderer = MeshRenderer(self.ctx)
            self.renderer.set_texture(PLAIN)
            self._uploaded = PLAIN
        except Exception as e:  # no usable GL: the rest of the studio still works
            self.error = f"3D view unavailable: {e}"
            log.warning(self.error)
            self.ctx = self.renderer = None

    def paintGL(self) -> None:
        if self.renderer is None:
            return
        try:
            self._paint()
        except Exception as e:  # report once; never let a GL error escape into Qt's paint loop
            if self.error is None:
                self.error = f"3D view error: {e}"
                log.exception("paintGL failed")

    def _paint(self) -> None:
        fbo = self.ctx.detect_framebuffer(self.defaultFramebufferObject())
        if self._topology is not None:
            self.renderer.set_mesh(*self._topology)
            self._topology = None
            self._has_mesh = True
        want = self._texture if self.mode == "textured" and self._texture is not None else PLAIN
        if want is not self._uploaded:
            self.renderer.set_texture(want)
            self._uploaded = want
        if self._G is None or not self._has_mesh:
            fbo.use()
            fbo.clear(*BACKGROUND, 1.0)
            return
        w, h = self.width(), self.height()
        vertices = self.view_vertices(w, h)
        lighting = FLAT if self.mode == "textured" else SHADED
        self.ctx.wireframe = self.mode == "wireframe"
        try:
            self.renderer.draw(fbo, vertices, lighting=lighting, clear=BACKGROUND, size=(w, h))
        finally:
            self.ctx.wireframe = False
        self.frames_drawn += 1
