"""ModernGL renderer for the textured face mesh: one drawing path for the studio and for offline rendering.

Coordinates. Vertices are given in *image space*, e.g. `pose.transform(G, H)` for a crop of size (W, H_img):
x right and y down in pixels, z away from the camera (smaller z = closer; any scale, normally f·cm). The pixel
in row i, column j covers [j, j+1) × [i, i+1), so its centre is (j + ½, i + ½) — OpenGL's rasterisation rule and
`grid_sample(align_corners=False)`'s convention (OpenCV puts centres on integers: subtract ½ to go there).
The projection is orthographic (the weak-perspective model); depth is normalised from the frame's own z range.

    ctx = moderngl.create_context()                  # inside QOpenGLWidget.initializeGL, or EGL (see below)
    r = MeshRenderer(ctx)
    r.set_mesh(triangles [F,3], uv [V,2])            # once per topology; uv in [0,1], u right, v down
    r.set_texture(T [S,S,3] uint8 or float in [0,1]) # when the texture changes
    r.draw(fbo, vertices [V,3], lighting=Lighting(...), background=img [h,w,3] uint8 or None)
    values, covered = r.render_attributes(vertices, attributes [V,k≤3], (W, H))   # unlit, float32 readback

    with OffscreenRenderer(W, H) as off:            # standalone EGL context, no display needed
        off.set_mesh(...); off.set_texture(...)
        rgb = off.render(vertices, lighting, background)   # [H,W,3] uint8, top row first
        z = off.render_depth(vertices)                     # [H,W] float32 image-space z, +inf off the mesh
        values, covered = off.render_attributes(vertices, attributes)

Lighting: colour = texture · (ambient + key · max(n·l, 0) · lit), with per-vertex normals computed in image space
each frame and l the unit direction *towards* the key light in image space (so (0, 0, -1) is a light at the
camera and (0, -1, 0) a light from above). `Lighting(shadow=True)` adds a hard shadow from an orthographic shadow
map along l. GL objects are made once; a frame only rewrites the vertex buffer (and the background texture).
`set_mesh` rewinds triangles if needed so normals face the camera on the frontal canonical shape. An
OffscreenRenderer makes its own context current on every call (several may coexist); a MeshRenderer expects its
context to be current already (Qt does that before paintGL). No torch here: the live app uses this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import moderngl
import numpy as np

SHADERS = Path(__file__).resolve().parents[1] / "shaders"
SHADOW_MAP_SIZE = 1024  # a face spans a few hundred pixels; hard shadow edges need no more


@dataclass(frozen=True)
class Lighting:
    """Ambient colour + one coloured directional key light (RGB multipliers of the texture)."""

    ambient: tuple[float, float, float] = (1.0, 1.0, 1.0)
    key: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, float, float] = (0.0, 0.0, -1.0)  # towards the light, image space
    shadow: bool = False


FLAT = Lighting()  # texture colours exactly


def _program(ctx: moderngl.Context, name: str) -> moderngl.Program:
    return ctx.program(
        vertex_shader=(SHADERS / f"{name}.vert").read_text(), fragment_shader=(SHADERS / f"{name}.frag").read_text()
    )


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V,3] (float32) for the winding of `triangles`."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    out = np.stack(
        [sum(np.bincount(triangles[:, k], n[:, d], len(vertices)) for k in range(3)) for d in range(3)], axis=-1
    )
    return (out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def facing_camera(triangles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`triangles` wound so their normals point to the camera (−z) on the frontal `reference` shape [V,3]."""
    a, b, c = (reference[triangles[:, k]] for k in range(3))
    if np.cross(b - a, c - a)[:, 2].sum() > 0:
        return np.ascontiguousarray(triangles[:, [0, 2, 1]])
    return np.ascontiguousarray(triangles)


def _depth_range(z: np.ndarray) -> tuple[float, float]:
    lo, hi = float(z.min()), float(z.max())
    pad = 0.05 * (hi - lo) + 1e-3  # keep the extreme vertices off the clip planes
    return lo - pad, hi + pad


def light_matrix(vertices: np.ndarray, direction) -> np.ndarray:
    """4×4 matrix (row-major) mapping image-space points into the key light's orthographic clip space."""
    d = -np.asarray(direction, np.float64)
    d /= np.linalg.norm(d)  # the direction the light travels: depth grows along it
    up = np.array([0.0, 1.0, 0.0]) if abs(d[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    right = np.cross(up, d)
    right /= np.linalg.norm(right)
    basis = np.stack([right, np.cross(d, right), d])
    p = vertices @ basis.T
    lo, hi = p.min(0), p.max(0)
    pad = 0.02 * (hi - lo).max() + 1e-3
    lo, hi = lo - pad, hi + pad
    scale = 2.0 / (hi - lo)
    M = np.eye(4)
    M[:3, :3] = basis * scale[:, None]
    M[:3, 3] = -(lo + hi) / 2 * scale
    return M


class MeshRenderer:
    """Draws the textured mesh into a framebuffer of a given moderngl Context (Qt's or a standalone one)."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.mesh = _program(ctx, "mesh")
        self.shadow = _program(ctx, "shadow")
        self.attribute = _program(ctx, "attribute")
        self.background = _program(ctx, "background")
        corners = np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32)
        self._corners = ctx.buffer(corners)
        self._quad = ctx.vertex_array(self.background, [(self._corners, "2f", "in_corner")])
        self._bg_tex = None
        self._albedo = None
        self._shadow_tex = ctx.depth_texture((SHADOW_MAP_SIZE, SHADOW_MAP_SIZE))
        self._shadow_tex.compare_func = ""  # read raw depths; the shader compares
        self._shadow_tex.filter = (moderngl.NEAREST, moderngl.NEAREST)  # hard edges
        self._shadow_fbo = ctx.framebuffer(depth_attachment=self._shadow_tex)
        self._attr_fbo = self._attr_tex = self._attr_depth = None
        self.triangles = None
        self._mesh_objects = []

    # -- per-topology / per-texture state ------------------------------------------------------------------
    def set_mesh(self, triangles: np.ndarray, uv: np.ndarray, reference: np.ndarray | None = None) -> None:
        """Topology: triangles [F,3], uv [V,2]. Winding is fixed so normals face the camera on `reference`
        (the frontal canonical shape by default), whatever convention the topology uses."""
        if reference is None:
            from engine.canonical import load

            reference = load()[0]
        self.triangles = facing_camera(np.asarray(triangles, np.int32), np.asarray(reference))
        n_vertices = len(uv)
        ctx = self.ctx
        for obj in self._mesh_objects:  # a previous topology's buffers
            obj.release()
        self._pos_normal = ctx.buffer(reserve=n_vertices * 24, dynamic=True)
        self._attr = ctx.buffer(reserve=n_vertices * 12, dynamic=True)
        index = ctx.buffer(self.triangles.astype(np.int32).tobytes())
        uvb = ctx.buffer(np.asarray(uv, np.float32).tobytes())
        self._mesh_vao = ctx.vertex_array(
            self.mesh, [(self._pos_normal, "3f 3f", "in_pos", "in_normal"), (uvb, "2f", "in_uv")], index, 4
        )
        self._shadow_vao = ctx.vertex_array(self.shadow, [(self._pos_normal, "3f 12x", "in_pos")], index, 4)
        self._attr_vao = ctx.vertex_array(
            self.attribute, [(self._pos_normal, "3f 12x", "in_pos"), (self._attr, "3f", "in_attr")], index, 4
        )
        self._mesh_objects = [self._mesh_vao, self._shadow_vao, self._attr_vao, self._pos_normal, self._attr]
        self._mesh_objects += [index, uvb]

    def set_texture(self, texture: np.ndarray) -> None:
        """UV texture [S,S,3]: uint8, or float in [0,1]. Row i ↔ v, column j ↔ u (no flip needed)."""
        texture = np.ascontiguousarray(texture)
        dtype = "f1" if texture.dtype == np.uint8 else "f4"
        data = texture if dtype == "f1" else texture.astype(np.float32)
        size = (texture.shape[1], texture.shape[0])
        if self._albedo is None or self._albedo.size != size or self._albedo.dtype != dtype:
            if self._albedo is not None:
                self._albedo.release()
            self._albedo = self.ctx.texture(size, 3, dtype=dtype, alignment=1)
            self._albedo.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            self._albedo.repeat_x = self._albedo.repeat_y = False
        self._albedo.write(data.tobytes(), alignment=1)
        self._albedo.build_mipmaps()

    # -- per frame -----------------------------------------------------------------------------------------
    def _upload(self, vertices: np.ndarray) -> None:
        v = np.asarray(vertices, np.float32)
        self._pos_normal.write(np.concatenate([v, vertex_normals(v, self.triangles)], axis=1).tobytes())

    def _draw_background(self, image: np.ndarray, target: tuple[int, int]) -> None:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        size = (image.shape[1], image.shape[0])
        if self._bg_tex is None or self._bg_tex.size != size:
            if self._bg_tex is not None:
                self._bg_tex.release()
            self._bg_tex = self.ctx.texture(size, 3, alignment=1)
            self._bg_tex.repeat_x = self._bg_tex.repeat_y = False
        self._bg_tex.write(image.tobytes(), alignment=1)
        # Same size as the target: nearest reproduces it exactly; otherwise it is scaled to fit.
        nearest = size == tuple(target)
        self._bg_tex.filter = (moderngl.NEAREST, moderngl.NEAREST) if nearest else (moderngl.LINEAR, moderngl.LINEAR)
        self._bg_tex.use(0)
        self.background["image"] = 0
        self.ctx.disable(moderngl.DEPTH_TEST)
        self._quad.render(moderngl.TRIANGLE_STRIP)

    def draw(
        self,
        fbo: moderngl.Framebuffer,
        vertices: np.ndarray,
        lighting: Lighting = FLAT,
        background: np.ndarray | None = None,
        clear=(0.0, 0.0, 0.0),
        size: tuple[int, int] | None = None,
    ) -> None:
        """Clear `fbo`, draw the background (if any) then the mesh. `size` = (W, H) of the image space the
        vertices live in; by default the framebuffer's size (the studio passes the crop size and its own
        viewport to show a crop scaled in a widget)."""
        ctx = self.ctx
        vertices = np.asarray(vertices, np.float32)
        self._upload(vertices)
        M = light_matrix(vertices, lighting.direction).T.astype(np.float32).tobytes()  # GLSL is column-major
        shadow = lighting.shadow and any(lighting.key)
        if shadow:
            self.shadow["light_matrix"].write(M)
            self._shadow_fbo.use()
            self._shadow_fbo.clear(depth=1.0)
            ctx.enable(moderngl.DEPTH_TEST)
            self._shadow_vao.render()
        fbo.use()
        fbo.clear(*clear, 1.0, depth=1.0)
        if background is not None:
            self._draw_background(background, fbo.viewport[2:])
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)  # the mesh is open (eyes, mouth): the depth test does the hiding
        W, H = size or fbo.size
        l = np.asarray(lighting.direction, np.float64)
        self.mesh["viewport"] = (float(W), float(H))
        self.mesh["depth_range"] = _depth_range(vertices[:, 2])
        self.mesh["light_matrix"].write(M)
        self.mesh["ambient"] = tuple(map(float, lighting.ambient))
        self.mesh["key_color"] = tuple(map(float, lighting.key))
        self.mesh["key_dir"] = tuple(l / np.linalg.norm(l))
        self.mesh["use_shadow"] = bool(shadow)
        self._albedo.use(0)
        self._shadow_tex.use(1)
        self.mesh["albedo"] = 0
        self.mesh["shadow_map"] = 1
        self._mesh_vao.render()

    def render_attributes(self, vertices: np.ndarray, attributes: np.ndarray, size: tuple[int, int]):
        """Unlit pass into a float framebuffer of `size` = (W, H): per-vertex `attributes` [V,k≤3] interpolated
        over the visible surface. Returns (values [H,W,k] float32, covered [H,W] bool), top row first."""
        vertices = np.asarray(vertices, np.float32)
        attributes = np.asarray(attributes, np.float32).reshape(len(vertices), -1)
        k = attributes.shape[1]
        size = tuple(int(n) for n in size)
        if self._attr_fbo is None or self._attr_fbo.size != size:
            for obj in (self._attr_fbo, self._attr_tex, self._attr_depth):
                if obj is not None:
                    obj.release()
            self._attr_tex = self.ctx.texture(size, 4, dtype="f4")
            self._attr_depth = self.ctx.depth_renderbuffer(size)
            self._attr_fbo = self.ctx.framebuffer(self._attr_tex, self._attr_depth)
        self._upload(vertices)
        self._attr.write(np.pad(attributes, ((0, 0), (0, 3 - k))).tobytes())
        self._attr_fbo.use()
        self._attr_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.disable(moderngl.CULL_FACE)
        self.attribute["viewport"] = tuple(map(float, size))
        self.attribute["depth_range"] = _depth_range(vertices[:, 2])
        self._attr_vao.render()
        raw = self._attr_fbo.read(components=4, dtype="f4")
        out = np.frombuffer(raw, np.float32).reshape(size[1], size[0], 4)[::-1]
        return np.ascontiguousarray(out[..., :k]), out[..., 3] > 0.5

    def release(self) -> None:
        """Free the GL objects made here (not the context)."""
        done = {id(o) for o in self._mesh_objects}
        for obj in self._mesh_objects:
            obj.release()
        for name, obj in vars(self).items():
            if name != "ctx" and id(obj) not in done and hasattr(obj, "release"):
                obj.release()


class OffscreenRenderer:
    """A standalone EGL context + an RGBA8/depth framebuffer of (width, height), reading back uint8 RGB."""

    def __init__(self, width: int, height: int, ctx: moderngl.Context | None = None):
        self.ctx = ctx or moderngl.create_standalone_context(backend="egl")
        self._own_ctx = ctx is None
        self.size = (int(width), int(height))
        self.fbo = self.ctx.framebuffer(
            self.ctx.renderbuffer(self.size, 4), self.ctx.depth_renderbuffer(self.size)
        )
        self.renderer = MeshRenderer(self.ctx)

    # Every call makes this context current first: another standalone context may have been made since.
    def set_mesh(self, triangles, uv, reference=None) -> None:
        with self.ctx:
            self.renderer.set_mesh(triangles, uv, reference)

    def set_texture(self, texture) -> None:
        with self.ctx:
            self.renderer.set_texture(texture)

    def render(self, vertices, lighting: Lighting = FLAT, background=None, clear=(0.0, 0.0, 0.0)) -> np.ndarray:
        """[H,W,3] uint8 RGB, top row first."""
        with self.ctx:
            self.renderer.draw(self.fbo, vertices, lighting, background, clear)
            raw = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(raw, np.uint8).reshape(self.size[1], self.size[0], 3)[::-1].copy()

    def render_attributes(self, vertices, attributes):
        """Unlit per-vertex attributes [V,k≤3] → (values [H,W,k] float32, covered [H,W] bool)."""
        with self.ctx:
            return self.renderer.render_attributes(vertices, attributes, self.size)

    def render_depth(self, vertices) -> np.ndarray:
        """[H,W] float32: image-space z of the nearest surface at each pixel centre, +inf off the mesh."""
        v = np.asarray(vertices, np.float32)
        z, covered = self.render_attributes(v, v[:, 2:3])
        return np.where(covered, z[..., 0], np.inf).astype(np.float32)

    def release(self) -> None:
        with self.ctx:
            self.renderer.release()
            self.fbo.release()
        if self._own_ctx:
            self.ctx.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def offscreen(width: int, height: int) -> OffscreenRenderer:
    """Headless renderer of the given size on a standalone EGL context."""
    return OffscreenRenderer(width, height)
