"""The synthetic performer: a textured head from a real photo, animated with ground truth.

`write_clip` renders `video.mp4` and `gt.npz` (G [N,468,3] canonical frame, H [N,6] in frame pixels,
expr [N,E] with names, plus the frame size) for a `lab` domain (even white light, plain background) or a `wild`
one (coloured key light with a hard shadow, cluttered background, white-balance shift, sensor noise, blur,
JPEG). Everything is a function of the seed.
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

from engine import expressions, options, pose
from engine.errors import UserError
from engine.render import Lighting

FPS = 25.0
POSE_LIMITS_DEG = np.array([25.0, 40.0, 15.0])   # pitch, yaw, roll amplitudes
FACE_HEIGHT_FRACTION = 0.42                       # face oval height / frame height at scale 1
TEXTURE_SIZE = 256


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
    """UV texture (size² RGB uint8) unwrapped from a photo by the teacher + Eq. 7; holes filled by inpainting."""
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
    return paint_openings(cv2.inpaint(texture, holes, 5, cv2.INPAINT_TELEA))


def paint_openings(texture: np.ndarray) -> np.ndarray:
    """Eyeballs (sclera, iris, pupil) and a dark mouth interior in the UV openings the closed mesh fills."""
    from engine.topology import topology

    topo, size = topology(), texture.shape[0]
    out = texture.copy()
    for name in ("eye_left", "eye_right", "lips_inner"):
        poly = topo.uv[topo.loops[name]] * size
        pts = np.round(poly * 16).astype(np.int32)
        if name == "lips_inner":
            cv2.fillPoly(out, [pts], (58, 24, 30), cv2.LINE_AA, shift=4)
            continue
        cv2.fillPoly(out, [pts], (228, 222, 214), cv2.LINE_AA, shift=4)
        centre, height = poly.mean(0), poly[:, 1].max() - poly[:, 1].min()
        iris = np.zeros(out.shape[:2], np.uint8)
        cv2.fillPoly(iris, [pts], 1, shift=4)   # the iris is clipped by the eyelids
        disc = np.zeros_like(iris)
        c = tuple(np.round(centre * 16).astype(int))
        cv2.circle(disc, c, int(0.6 * height * 16), 1, -1, cv2.LINE_AA, shift=4)
        out[(disc & iris) > 0] = (78, 52, 34)
        cv2.circle(out, c, int(0.25 * height * 16), (12, 8, 8), -1, cv2.LINE_AA, shift=4)
    return out


def write_clip(out: str | Path, frames: int, domain: str, seed: int, size: tuple[int, int] = (640, 480),
               face_image: str | Path | None = None) -> Path:
    """Render a clip; returns the output folder (video.mp4, gt.npz, meta.json)."""
    from engine import canonical
    from engine.render import OffscreenRenderer
    from engine.topology import topology
    from engine.video import VideoWriter

    if frames < 1:
        raise UserError(f"--frames must be ≥ 1 (got {frames})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dom = DOMAINS[domain]
    rng = np.random.default_rng(seed)
    shape = canonical.load()[0]
    face_height = float(shape[:, 1].max() - shape[:, 1].min())
    H = pose_path(rng, frames, size, face_height)
    expr = expression_track(rng, frames)
    G = expressions.apply(expr)
    texture = performer_texture(None if face_image is None else str(face_image))
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
            renderer.set_texture(texture)
            for t in tqdm(range(frames), desc=f"synth {domain}", unit="frame", disable=None):
                vertices = pose.transform(G[t].astype(np.float64), H[t]).astype(np.float32)
                frame = renderer.render(vertices, dom.light, backdrop)
                video.write(camera_effects(rng, frame, dom, gains))
        gt = io.BytesIO()
        np.savez_compressed(gt, G=G.astype(np.float32), H=H.astype(np.float32), expr=expr,
                            expr_names=np.array(expressions.NAMES), image_size=np.array(size))
        options.write_file(tmp_gt, gt.getvalue())
        options.write_file(tmp_meta, json.dumps({"domain": domain, "seed": seed, "frames": frames, "fps": FPS,
                                                 "size": list(size), "H_units": "frame pixels"}, indent=2).encode())
    return out
