"""Enrollment (paper §3, "data capture"): the teacher in the one tracking loop (engine.tracking: detect, then
track from the previous frame's landmarks) gives per frame the 256² crop, landmarks, H and G (Procrustes,
refined in 2D); then T̃ and W by Eq. 7.

A guided enrollment clip's prompt timeline (engine.prompts.sidecar) gives the prompt each frame was recorded under
(RUN/enrollment/prompt.npy, −1 for none): the export measures each expression's range where it was asked for and
learns the teacher's view bias where the face was asked to rest (export.ranges, engine.view_bias).

Writes RUN/enrollment/*.npy (plain arrays, loaded without pickle), RUN/report.json, RUN/contact_sheet.png
(crops with the projected mesh) and RUN/mean_texture.png (the W-weighted mean of T̃).
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from engine import options, pose, progress, prompts, unwrap, video
from engine.errors import UserError
from engine.run import Run
from engine.teacher import TeacherModel
from engine.topology import topology
from engine.tracking import FaceLoop

BATCH = 16               # frames unwrapped together


def track_frames(infos: list[video.VideoInfo], stats: dict, max_frames: int | None = None, start: float = 0.0,
                 stop: float = 1.0, label: str = "track"):
    """Teacher tracking over the videos: yields (video index, frame index, found) per decoded frame, where found is
    the loop's FaceResult (crop, image, landmarks, H_crop, G) or None. Adds decode/teacher seconds to `stats`, and
    the number of detector runs and of frames where it saw several faces (the largest one is tracked)."""
    model = TeacherModel()
    for vi, info in enumerate(infos):
        tracker = FaceLoop(model)
        first = int(round(start * info.frames))
        n = int(round(stop * info.frames)) - first
        n = n if max_frames is None else min(n, max_frames)
        frames = video.frames(info.path, start, stop)
        for k in tqdm(range(n), desc=f"{label} {info.path.name}", unit="frame", disable=None):
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            t1 = time.perf_counter()
            found = tracker(frame)
            stats["decode"] = stats.get("decode", 0.0) + t1 - t0
            stats["teacher"] = stats.get("teacher", 0.0) + time.perf_counter() - t1
            progress.report(label, k + 1, n)
            yield vi, first + k, found
        stats["detections"] = stats.get("detections", 0) + tracker.detections
        stats["several_faces"] = stats.get("several_faces", 0) + tracker.several_faces


def enroll(videos: list[str | Path], out: str | Path, texture_size: int = 256, max_frames: int | None = None,
           start: float = 0.0, stop: float = 1.0) -> dict:
    """Enroll the frames between fractions `start` and `stop` of each video."""
    infos = [video.probe(v) for v in videos]          # every input is checked before any work starts
    asked = [prompts.recorded(i.path, i.frames) for i in infos]   # per video: None, or each frame's prompt
    out = Path(out)
    store = {k: [] for k in ("crops", "landmarks", "H", "G", "textures", "weights", "source", "crop_boxes",
                             "prompt")}
    stats = {"decode": 0.0, "teacher": 0.0, "unwrap": 0.0}
    total = 0
    pending = []

    def flush():
        if not pending:
            return
        t0 = time.perf_counter()
        images = torch.from_numpy(np.stack([p[0] for p in pending])).permute(0, 3, 1, 2).float() / 255
        H = torch.from_numpy(np.stack([p[1] for p in pending])).float()
        G = torch.from_numpy(np.stack([p[2] for p in pending])).float()
        with torch.no_grad():
            T, W = unwrap.unwrap(images, G, H, texture_size)
        store["textures"].extend((T.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8))
        store["weights"].extend((W[:, 0].numpy() * 255 + 0.5).astype(np.uint8))
        stats["unwrap"] += time.perf_counter() - t0
        pending.clear()

    begin = time.perf_counter()
    for vi, fi, found in track_frames(infos, stats, max_frames, start, stop, label="enroll"):
        total += 1
        if found is None:
            continue
        crop, image, H, G = found.crop, found.image, found.H_crop, found.G
        for key, value in (("crops", image), ("landmarks", found.landmarks.astype(np.float32)), ("H", H),
                           ("G", G), ("source", (vi, fi)), ("crop_boxes", (crop.cx, crop.cy, crop.size, crop.angle)),
                           ("prompt", asked[vi][fi] if asked[vi] is not None and fi < len(asked[vi]) else -1)):
            store[key].append(value)
        pending.append((image, H, G))
        if len(pending) == BATCH:
            flush()
    flush()
    elapsed = time.perf_counter() - begin
    kept = len(store["H"])
    if total == 0:
        raise UserError(f"{', '.join(str(i.path) for i in infos)}: no decodable frames")
    if kept == 0:
        raise UserError(f"{', '.join(str(i.path) for i in infos)}: no face found in any of {total} frames")

    folder = Run(out).enrollment
    folder.mkdir(parents=True, exist_ok=True)
    dtypes = {"crops": np.uint8, "textures": np.uint8, "weights": np.uint8, "source": np.int32, "prompt": np.int8}
    for key, values in store.items():
        options.save_npy(folder / f"{key}.npy", np.asarray(values, dtype=dtypes.get(key, np.float32)))

    weights = np.asarray(store["weights"], np.float32)[..., None] / 255
    mean_texture = (np.asarray(store["textures"], np.float32) * weights).sum(0) / np.maximum(weights.sum(0), 1e-6)
    cv2.imwrite(str(out / "mean_texture.png"), cv2.cvtColor(mean_texture.astype(np.uint8), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(contact_sheet(store), cv2.COLOR_RGB2BGR))
    angles = pose.degrees(np.asarray(store["H"]))
    report = {
        "videos": [str(i.path) for i in infos],
        "span": [start, stop],
        "frames_total": total,
        "frames_kept": kept,
        "frames_resting": int(np.isin(prompts.keys_of(store["prompt"]), prompts.HOLD_STILL).sum()),   # guided
        "frames_no_face": total - kept,
        "ms_per_frame": 1000 * elapsed / total,
        "ms_per_stage": {k: 1000 * stats[k] / total for k in ("decode", "teacher", "unwrap")},
        "detections": stats["detections"],
        "frames_several_faces": stats["several_faces"],
        "seconds": elapsed,
        "texture_size": texture_size,
        "crop_size": TeacherModel.crop_size,
        "mean_visible_texels": float((weights > 0).mean()),
        "pose_range_deg": {"pitch": _range(angles[:, 0]), "yaw": _range(angles[:, 1]), "roll": _range(angles[:, 2])},
    }
    options.write_json(out / "report.json", report)
    return report


def _range(a: np.ndarray) -> list[float]:
    return [round(float(a.min()), 1), round(float(a.max()), 1)]


def contact_sheet(store: dict, cells: int = 16, columns: int = 4, size: int = 192) -> np.ndarray:
    """A grid of evenly spaced kept crops with the fitted mesh (Π H G) drawn over them."""
    triangles = topology().triangles
    picks = np.linspace(0, len(store["H"]) - 1, min(cells, len(store["H"]))).round().astype(int)
    rows = -(-len(picks) // columns)
    sheet = np.full((rows * size, columns * size, 3), 32, np.uint8)
    scale = size / TeacherModel.crop_size
    for k, i in enumerate(picks):
        tile = cv2.resize(store["crops"][i], (size, size), interpolation=cv2.INTER_AREA)
        xy = pose.project(np.asarray(store["G"][i], np.float64), np.asarray(store["H"][i], np.float64)) * scale
        mesh = tile.copy()
        cv2.polylines(mesh, list(np.round(xy[triangles] * 16).astype(np.int32)), True, (80, 255, 120), 1,
                      cv2.LINE_AA, shift=4)
        tile = cv2.addWeighted(tile, 0.6, mesh, 0.4, 0)   # translucent, so the face stays readable
        r, c = divmod(k, columns)
        sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = tile
    return sheet
