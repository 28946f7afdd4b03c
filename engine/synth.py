"""The synthetic performer: a textured head from a real photo, animated with ground truth.

`write_clip` renders `video.mp4` and `gt.npz` (G [N,468,3] canonical frame, H [N,6] in frame pixels,
expr [N,E] with names, gaze [N,2,2], plus the frame size) for a `lab` domain (even white light, plain background)
or a `wild` one (coloured key light with a hard shadow, cluttered background, white-balance shift, sensor noise,
blur, JPEG). Everything is a function of the seed.

Gaze ground truth: `gaze[t, e]` is (yaw, pitch) in radians of eye e in (left, right) (the subject's), in
app.senders' convention (yaw > 0 towards the subject's right, pitch > 0 down). Both eyes look the same way
(fixations, about half of them at the camera, and 3-frame saccades; `gaze_track`). Each eye is an eyeball of radius
eye width / engine.eyes.WIDTH_OVER_RADIUS seen along the head's z axis: its iris centre sits at
(sin(inward yaw), sin(pitch)) eyeball radii from its resting place, along the corner line (towards the nose) and
across it (down), in the frame of the eye's two corners of that frame's mesh. That is engine.eyes.gaze_angles
inverted, so the truth is exactly the angle the tracker's rule gives for the iris offset it should measure:
`facetrack eval` scores the measurement (landmarker, crops, head-pose foreshortening, calibration), not the
eyeball-radius guess both sides share. The iris is painted per frame into the UV texels of the eye openings at
the 3D place that rule gives (`EyeTexels`), so the lids cover it as they close; while a lid field is past
BLINK_CLOSED the gaze is held (the iris is hidden there and such frames are not scored). Where the lids have
nearly met, the opening shows the lid and its lashes instead of a sliver of eyeball (`LID_SHUT`).
"""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engine import expressions, options, pose, prompts
from engine.errors import UserError
from engine.render import Lighting

FPS = 25.0
POSE_LIMITS_DEG = np.array([25.0, 40.0, 15.0])   # pitch, yaw, roll amplitudes
FACE_HEIGHT_FRACTION = 0.42                       # face oval height / frame height at scale 1
TEXTURE_SIZE = 256
GAZE_LIMITS_DEG = np.array([25.0, 15.0])          # yaw, pitch of the gaze targets
GAZE_SEED_STREAM = 1                              # the gaze draws from its own stream: other tracks stay as they were
BLINK_CLOSED = 0.5                                # a lid field past this hides the iris (export.expressions' hold)
SCRIPTS = (None, "enroll")                        # what the performer does: random tracks, or the guided prompts
GUIDED_SWAY = 0.2                                 # of the random head motion, kept under the guided prompts
SACCADE_FRAMES = 3                                # frame steps a gaze jump takes: 120 ms at 25 fps (people: 30–100)
SCLERA, IRIS, PUPIL = (228, 222, 214), (78, 52, 34), (12, 8, 8)
IRIS_RADIUS, PUPIL_RADIUS = 0.18, 0.075           # eye widths (an 11.5 mm iris on a 32 mm eye; as painted before)
SIDES = ("left", "right")                         # gaze's eye order
# Where an eye opening's triangle has shrunk to LID_SHUT[1] of its resting area or less the lids read as shut: its
# texels show the lid skin around the opening, darkened by the lashes (LASH_SHADE); from LID_SHUT[0] down they blend
# in. A real eye shows no eyeball once its lids nearly meet, but the meshes' lids stop short of each other at a
# full blink (the lid pairs are 2–20 % of their resting gap apart with the procedural field, 22–28 % with the ICT
# scans carried onto our mesh), and the opening then drew a white line that the iris model read as an eye
# 15–37 % closed (docs/BENCHMARKS.md, "eleventh step").
LID_SHUT = (0.55, 0.3)
LASH_SHADE = 0.55
LID_RING = 3                                      # texels around an opening whose median colour is its lids' skin


@dataclass
class Domain:
    light: "Lighting"
    clutter: bool
    white_balance: float   # max per-channel gain deviation
    noise: float           # sensor noise σ in 0..255 units
    blur: float            # Gaussian σ in pixels (max)
    jpeg: int              # JPEG quality (0 = off)


DOMAINS = {
    # Even white light from the camera, plain backdrop, clean camera.
    "lab": Domain(Lighting((0.55, 0.55, 0.55), (0.5, 0.5, 0.5), (0.0, 0.0, -1.0)), False, 0.0, 0.0, 0.0, 0),
    # Warm key light from the upper right with a hard shadow, bluish fill, clutter, a cheap camera.
    "wild": Domain(Lighting((0.25, 0.3, 0.42), (1.0, 0.72, 0.45), (0.65, -0.35, -0.68), shadow=True),
                   True, 0.18, 4.0, 1.2, 55),
}


def smooth_track(rng: np.random.Generator, n: int, amplitude: float, waves: int = 3) -> np.ndarray:
    """A smooth random signal in [-amplitude, amplitude]: a normalised sum of slow sinusoids."""
    t = np.arange(n) / FPS
    freqs = rng.uniform(0.05, 0.35, waves)
    phases = rng.uniform(0, 2 * np.pi, waves)
    weights = rng.uniform(0.5, 1.0, waves)
    s = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
    return amplitude * s / weights.sum()


def pose_path(rng: np.random.Generator, n: int, size: tuple[int, int], face_height_cm: float) -> np.ndarray:
    """H [n, 6] in frame pixels: pitch/yaw/roll within POSE_LIMITS_DEG, drifting translation and scale."""
    w, h = size
    angles = np.stack([smooth_track(rng, n, np.radians(a) * 1.35) for a in POSE_LIMITS_DEG], -1)
    angles = np.clip(angles, -np.radians(POSE_LIMITS_DEG), np.radians(POSE_LIMITS_DEG))
    f = FACE_HEIGHT_FRACTION * h / face_height_cm * (1.0 + smooth_track(rng, n, 0.15))
    tx = w / 2 + smooth_track(rng, n, 0.15 * w)
    ty = h / 2 + smooth_track(rng, n, 0.1 * h)
    return np.column_stack([f, angles, tx, ty])


def expression_track(rng: np.random.Generator, n: int) -> np.ndarray:
    """Activations [n, E] in [0, 1]: slow expressions that come and go, and short blinks (sometimes winks)."""
    E = len(expressions.NAMES)
    act = np.clip(np.stack([smooth_track(rng, n, 1.6, waves=2) for _ in range(E)], -1), 0.0, 1.0)
    # Don't mix opposite brow motions at full strength.
    b = expressions.NAMES.index
    act[:, b("brow_frown")] *= 1.0 - act[:, b("brow_raise")]
    blink = np.zeros((n, 2))
    t = int(rng.integers(5, 40))
    while t < n:
        length = int(rng.integers(4, 8))
        shape = np.sin(np.linspace(0, np.pi, length))
        eyes = [0, 1] if rng.random() > 0.25 else [int(rng.integers(0, 2))]
        for e in eyes:
            blink[t:t + length, e] = shape[: n - t]
        t += length + int(rng.integers(25, 90))
    act[:, b("blink_left")] = np.maximum(act[:, b("blink_left")] * 0.3, blink[:, 0])
    act[:, b("blink_right")] = np.maximum(act[:, b("blink_right")] * 0.3, blink[:, 1])
    return act.astype(np.float32)


def gaze_track(rng: np.random.Generator, n: int, blink: np.ndarray) -> np.ndarray:
    """Gaze [n, 2, 2] ((left, right) × (yaw, pitch), radians): fixations (at the camera 1–2.4 s, elsewhere within
    GAZE_LIMITS_DEG 0.3–1.2 s, back to the camera after half of those; the first one either) joined by ramps of
    SACCADE_FRAMES steps, with a slow ±0.3° drift; held through frames where either lid field of `blink` [n, 2] is
    past BLINK_CLOSED. Both eyes look the same way. About half the frames look at the camera, as a performer facing
    one does: what the clip-median calibration of `facetrack eval` assumes."""
    target = np.zeros((n, 2))
    t, at_camera = 0, bool(rng.random() < 0.5)
    while t < n:
        length = int(rng.integers(25, 60) if at_camera else rng.integers(8, 30))
        target[t:t + length] = 0.0 if at_camera else rng.uniform(-1.0, 1.0, 2) * GAZE_LIMITS_DEG
        t += length
        at_camera = not at_camera and rng.random() < 0.5
    ramp = np.ones(SACCADE_FRAMES) / SACCADE_FRAMES               # a jump spread evenly over SACCADE_FRAMES steps
    padded = np.concatenate([np.repeat(target[:1], SACCADE_FRAMES - 1, 0), target])
    deg = np.stack([np.convolve(padded[:, k], ramp, "valid") for k in range(2)], -1)
    deg += np.stack([smooth_track(rng, n, 0.3, waves=4) for _ in range(2)], -1)
    deg = np.clip(deg, -GAZE_LIMITS_DEG, GAZE_LIMITS_DEG)
    closed = (np.asarray(blink) > BLINK_CLOSED).any(1)
    for i in np.flatnonzero(closed):
        if i > 0:
            deg[i] = deg[i - 1]                                       # the iris is hidden: no saccade seen
    return np.repeat(np.radians(deg)[:, None], 2, 1)


def background(rng: np.random.Generator, size: tuple[int, int], clutter: bool) -> np.ndarray:
    """Plain studio backdrop (lab) or a cluttered collage of skimage's bundled photos (wild)."""
    w, h = size
    if not clutter:
        grad = np.linspace(0.85, 1.0, h)[:, None, None] * np.array([150, 158, 168])
        return np.broadcast_to(grad, (h, w, 3)).astype(np.uint8).copy()
    import skimage.data

    photos = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket(), skimage.data.immunohistochemistry()]
    base = cv2.resize(photos[int(rng.integers(len(photos)))], (w, h), interpolation=cv2.INTER_AREA)
    for _ in range(6):   # patches of other photos and flat shapes: edges and colours a real room has
        p = photos[int(rng.integers(len(photos)))]
        pw, ph = int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2))
        x, y = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        if rng.random() < 0.5:
            base[y:y + ph, x:x + pw] = cv2.resize(p, (pw, ph), interpolation=cv2.INTER_AREA)
        else:
            base[y:y + ph, x:x + pw] = rng.integers(0, 255, 3)
    return base


def camera_effects(rng: np.random.Generator, frame: np.ndarray, domain: Domain, gains: np.ndarray) -> np.ndarray:
    """White balance, blur, sensor noise and JPEG, in the order a camera applies them."""
    img = frame.astype(np.float32) * gains
    if domain.blur:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, domain.blur)))
    if domain.noise:
        img += rng.normal(0, domain.noise, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if domain.jpeg:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(domain.jpeg)])
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img


@lru_cache(maxsize=4)
def performer_texture(face_image: str | None = None, size: int = TEXTURE_SIZE) -> np.ndarray:
    """UV texture (size² RGB uint8) unwrapped from a photo by the teacher + Eq. 7; holes filled by inpainting; eye
    openings white (write_clip paints the irises per frame)."""
    import torch

    from engine import unwrap
    from engine.teacher import TeacherModel
    from engine.tracking import FaceLoop

    if face_image is None:
        import skimage.data

        photo = skimage.data.astronaut()
    else:
        bgr = cv2.imread(str(face_image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"{face_image}: cannot read image")
        photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    found = FaceLoop(TeacherModel())(photo)
    if found is None:
        raise UserError(f"{face_image or 'astronaut'}: no face found")
    H, G = found.H_crop, found.G
    image = torch.from_numpy(found.image).permute(2, 0, 1)[None].float() / 255
    T, W = unwrap.unwrap(image, torch.from_numpy(G)[None].float(), torch.from_numpy(H)[None].float(), size)
    texture = (T[0].permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
    holes = (W[0, 0].numpy() < 0.15).astype(np.uint8)
    return paint_openings(cv2.inpaint(texture, holes, 5, cv2.INPAINT_TELEA), irises=False)


def paint_openings(texture: np.ndarray, irises: bool = True) -> np.ndarray:
    """Eyeballs (sclera, and with `irises` a resting iris and pupil) and a dark mouth interior in the UV openings
    the closed mesh fills. write_clip paints its irises per frame instead (`EyeTexels`)."""
    from engine.topology import topology

    topo, size = topology(), texture.shape[0]
    out = texture.copy()
    for name in ("eye_left", "eye_right", "lips_inner"):
        poly = topo.uv[topo.loops[name]] * size
        pts = np.round(poly * 16).astype(np.int32)
        if name == "lips_inner":
            cv2.fillPoly(out, [pts], (58, 24, 30), cv2.LINE_AA, shift=4)
            continue
        cv2.fillPoly(out, [pts], SCLERA, cv2.LINE_AA, shift=4)
        if not irises:
            continue
        centre, height = poly.mean(0), poly[:, 1].max() - poly[:, 1].min()
        iris = np.zeros(out.shape[:2], np.uint8)
        cv2.fillPoly(iris, [pts], 1, shift=4)   # the iris is clipped by the eyelids
        disc = np.zeros_like(iris)
        c = tuple(np.round(centre * 16).astype(int))
        cv2.circle(disc, c, int(0.6 * height * 16), 1, -1, cv2.LINE_AA, shift=4)
        out[(disc & iris) > 0] = IRIS
        cv2.circle(out, c, int(0.25 * height * 16), PUPIL, -1, cv2.LINE_AA, shift=4)
    return out


@dataclass
class EyeTexels:
    """One eye opening's texels in the UV texture and where each lies on the opening's (hole) triangles, so the
    iris can be painted where it is in 3D however the lids have moved the opening."""
    side: str               # "left" | "right" (the subject's)
    rows: np.ndarray        # [K] texel rows and columns
    cols: np.ndarray
    tri: np.ndarray         # [K, 3] vertices of the hole triangle each texel is on
    bary: np.ndarray        # [K, 3] its barycentric coordinates there (UV → any mesh, affine per triangle)
    rest: np.ndarray        # (along, down) of the resting iris centre from the corners' midpoint, eye widths
    aa: float               # one texel in eye widths: the width of the iris's soft edge
    rest_area: np.ndarray   # [K] the resting (x, y) area of the triangle each texel is on, cm²
    ring: tuple             # (rows, cols) of the texels just around the opening: its lids' skin

    @classmethod
    def build(cls, side: str, size: int) -> EyeTexels:
        from engine import canonical
        from engine.topology import topology

        topo = topology()
        loop = topo.loops[f"eye_{side}"]
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(topo.uv[loop] * size * 16).astype(np.int32)], 1, shift=4)
        rows, cols = np.nonzero(mask)
        uv = (np.column_stack([cols, rows]) + 0.5) / size
        tris = np.array([t for t in topo.holes if set(t) <= set(loop)])
        bary = _barycentric(uv, topo.uv[tris])                     # [K, F, 3]
        best = bary.min(-1).argmax(1)                              # the triangle it is in (or nearest to)
        k = np.arange(len(uv))
        S = canonical.load()[0].astype(np.float64)
        centre, along, down, width = _eye_frame(S, side)
        rest = (S[loop, :2].mean(0) - centre) / width              # as the static paint had it: the loop's centroid
        corners = topo.uv[list(expressions.EYE_CORNERS[side])]
        aa = 1.0 / (size * float(np.linalg.norm(corners[0] - corners[1])))
        ring = np.nonzero(cv2.dilate(mask, np.ones((2 * LID_RING + 1,) * 2, np.uint8)) - mask)
        return cls(side, rows, cols, tris[best], bary[k, best], np.array([rest @ along, rest @ down]), aa,
                   _areas(S, tris[best]), ring)

    def paint(self, texture: np.ndarray, G: np.ndarray, gaze: np.ndarray) -> None:
        """Paint this eye's iris and pupil into `texture` (in place; its opening holds the sclera) for mesh G
        [468, 3] and the eye's (yaw, pitch)."""
        centre, along, down, width = _eye_frame(G, self.side)
        offset = self.rest + iris_offset(gaze, self.side)
        iris_at = centre + width * (offset[0] * along + offset[1] * down)
        at = np.einsum("kj,kjd->kd", self.bary, np.asarray(G, np.float64)[self.tri, :2])
        d = np.linalg.norm(at - iris_at, axis=1) / width
        colour = texture[self.rows, self.cols].astype(np.float32)
        for radius, paint in ((IRIS_RADIUS, IRIS), (PUPIL_RADIUS, PUPIL)):
            a = np.clip((radius - d) / self.aa + 0.5, 0.0, 1.0)[:, None]
            colour = colour * (1.0 - a) + np.array(paint, np.float32) * a
        lid = LASH_SHADE * np.median(texture[self.ring].astype(np.float32), 0)
        shut = self.shut(G)[:, None]
        colour = colour * (1.0 - shut) + lid * shut
        texture[self.rows, self.cols] = np.round(colour).astype(np.uint8)

    def shut(self, G: np.ndarray) -> np.ndarray:
        """[K] how far each texel's part of the opening reads as shut (0..1, LID_SHUT) for mesh G [468, 3]: where
        its triangle has closed, and all of it once the whole opening has (a corner triangle the lids hardly move
        does not stay open in a shut eye)."""
        area = _areas(G, self.tri)
        ratio = np.minimum(area / self.rest_area, area.sum() / self.rest_area.sum())
        return expressions._smoothstep((LID_SHUT[0] - ratio) / (LID_SHUT[0] - LID_SHUT[1]))


def _areas(G: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """[F] (x, y) areas of triangles tri [F, 3] of mesh G [V, 3]: the opening as the camera sees it head on."""
    P = np.asarray(G, np.float64)[:, :2][tri]
    u, v = P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]
    return 0.5 * np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])


def _barycentric(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric coordinates [K, F, 3] of points p [K, 2] in triangles tri [F, 3, 2]."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    T = np.stack([b - a, c - a], -1)                                  # [F, 2, 2]
    lam = np.einsum("fij,kfj->kfi", np.linalg.inv(T), p[:, None] - a[None])
    return np.concatenate([1.0 - lam.sum(-1, keepdims=True), lam], -1)


def _eye_frame(G: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(corners' midpoint, unit vector towards the nose, unit vector down across the corner line, corner distance)
    of one eye in G's (x, y): engine.eyes.eye_state's frame, in the head frame instead of the image."""
    outer, inner = (np.asarray(G[i, :2], np.float64) for i in reversed(expressions.EYE_CORNERS[side]))
    width = float(np.linalg.norm(inner - outer))
    along = (inner - outer) / width
    right = along if side == "right" else -along                      # image-left corner → image-right corner
    return (outer + inner) / 2, along, np.array([-right[1], right[0]]), width


def iris_offset(gaze, side: str) -> np.ndarray:
    """Iris displacement (towards the nose, down) in eye widths for one eye's (yaw, pitch): the inverse of
    engine.eyes.gaze_angles (yaw > 0 towards the subject's right, which is towards the nose for the left eye)."""
    from engine.eyes import WIDTH_OVER_RADIUS

    yaw, pitch = gaze
    inward = yaw if side == "left" else -yaw
    return np.array([np.sin(inward), np.sin(pitch)]) / WIDTH_OVER_RADIUS


def eye_texture(base: np.ndarray, eyes: list[EyeTexels], G: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """The texture of one frame: `base` (sclera-only openings) with both irises painted for G and gaze [2, 2]."""
    out = base.copy()
    for eye in eyes:
        eye.paint(out, G, gaze[SIDES.index(eye.side)])
    return out


def guided_tracks(rng: np.random.Generator, n: int, size: tuple[int, int], face_height_cm: float):
    """(H [n,6], expr [n,E]) of a performer following the guided enrollment (engine.prompts): each expression on
    its own, then the head turned to each side, with a small sway of the head throughout."""
    expr, turn = prompts.act(expressions.NAMES, n, FPS, rng)
    H = pose_path(rng, n, size, face_height_cm)
    H[:, 1:4] *= GUIDED_SWAY
    H[:, 1:3] += turn * np.radians(POSE_LIMITS_DEG[:2])
    return H, expr.astype(np.float32)


def write_clip(out: str | Path, frames: int, domain: str, seed: int, size: tuple[int, int] = (640, 480),
               face_image: str | Path | None = None, ict: str | Path | None = None, script: str | None = None) -> Path:
    """Render a clip; returns the output folder (video.mp4, gt.npz, meta.json; with a script also its prompt
    timeline, video.prompts.json: engine.prompts.sidecar). `ict`: an ICT-FaceKit delta file
    whose scanned blendshapes make the expressions (expressions.ict_basis) instead of the procedural fields.
    `script`: "enroll" acts out the guided enrollment's prompts (guided_tracks) instead of random expressions."""
    from engine import canonical
    from engine.render import OffscreenRenderer
    from engine.topology import topology
    from engine.video import VideoWriter

    if frames < 1:
        raise UserError(f"--frames must be ≥ 1 (got {frames})")
    if script not in SCRIPTS:
        raise UserError(f"--script must be one of {', '.join(s for s in SCRIPTS if s)} (got {script!r})")
    fields = None if ict is None else expressions.ict_basis(str(ict))     # a bad file fails before OUT is made
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dom = DOMAINS[domain]
    rng = np.random.default_rng(seed)
    shape = canonical.load()[0]
    face_height = float(shape[:, 1].max() - shape[:, 1].min())
    if script == "enroll":
        H, expr = guided_tracks(rng, frames, size, face_height)
    else:
        H = pose_path(rng, frames, size, face_height)
        expr = expression_track(rng, frames)
    G = expressions.apply(expr, fields)
    lids = expr[:, [expressions.NAMES.index(f"blink_{side}") for side in SIDES]]
    gaze = gaze_track(np.random.default_rng((seed, GAZE_SEED_STREAM)), frames, lids)
    texture = performer_texture(None if face_image is None else str(face_image))
    eyes = [EyeTexels.build(side, texture.shape[0]) for side in SIDES]
    backdrop = background(rng, size, dom.clutter)
    gains = 1.0 + rng.uniform(-dom.white_balance, dom.white_balance, 3).astype(np.float32)
    topo = topology()
    # The three outputs are written to temp files and renamed into place together at the end: a failed run (disk
    # full, Ctrl-C) leaves an earlier clip in OUT whole, never a truncated video beside another clip's truth.
    with contextlib.ExitStack() as outputs:
        tmp_video, tmp_gt, tmp_meta = (outputs.enter_context(options.atomic_path(out / name))
                                       for name in ("video.mp4", "gt.npz", "meta.json"))
        with OffscreenRenderer(*size) as renderer, VideoWriter(tmp_video, FPS) as video:
            renderer.set_mesh(np.concatenate([topo.triangles, topo.holes]), topo.uv)   # closed: eyes and mouth
            for t in tqdm(range(frames), desc=f"synth {domain}", unit="frame", disable=None):
                renderer.set_texture(eye_texture(texture, eyes, G[t], gaze[t]))
                vertices = pose.transform(G[t].astype(np.float64), H[t]).astype(np.float32)
                frame = renderer.render(vertices, dom.light, backdrop)
                video.write(camera_effects(rng, frame, dom, gains))
        gt = io.BytesIO()
        np.savez_compressed(gt, G=G.astype(np.float32), H=H.astype(np.float32), expr=expr,
                            expr_names=np.array(expressions.NAMES), image_size=np.array(size),
                            gaze=gaze.astype(np.float32))
        options.write_file(tmp_gt, gt.getvalue())
        meta = {"domain": domain, "seed": seed, "frames": frames, "script": script or "random", "fps": FPS,
                "size": list(size),
                "expressions": "procedural" if ict is None else f"ICT-FaceKit ({Path(ict).name})",
                "H_units": "frame pixels", "gaze_units": "radians, (left, right) × (yaw, pitch)"}
        options.write_file(tmp_meta, json.dumps(meta, indent=2).encode())
        if script == "enroll":
            timeline = prompts.timeline(prompts.frame_keys(frames, FPS))
            tmp_prompts = outputs.enter_context(options.atomic_path(prompts.sidecar(out / "video.mp4")))
            options.write_file(tmp_prompts, json.dumps(timeline).encode())
    if script is None:
        prompts.sidecar(out / "video.mp4").unlink(missing_ok=True)    # a guided clip's, rendered here before
    return out
