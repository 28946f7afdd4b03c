"""Live Link Face CSV: a take as the CSV that Epic's Live Link Face app records (and Unreal's LiveLinkFaceImporter,
Blender/Maya importers and MetaHuman tools read).

Layout, one row per frame:

    Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,...,RightEyeRoll
    14:03:52:28.207,61,0.01230000,...

- Columns: "Timecode", "BlendShapeCount", then the 52 ARKit shapes with a capital first letter in Live Link
  Face's own order (LLF_BLENDSHAPES), then 9 rotations (LLF_ROTATIONS). The order is Unreal's EARFaceBlendShape
  enum, not Apple's ARBlendShapeLocation list: JawRight comes before JawLeft and MouthRight before MouthLeft.
  Sources: the header of real Live Link Face takes as quoted by open importers (e.g. nmfisher/blender_livelinkface
  LIVE_LINK_FACE_HEADER, identical in its FaceAnimation CSV loader), which matches EARFaceBlendShape's enum order;
  Epic's LiveLinkFaceImporterFactory.cpp (Unreal's importer) requires the first two columns to be exactly
  "Timecode" and "BlendShapeCount" and every row to have as many cells as the header.
  tests/fixtures/livelink_header.csv holds this header.
- Timecode `HH:MM:SS:FF.mmm`: time of day, FF the frame within the second and .mmm the fraction of that frame in
  thousandths. Unreal's importer reads t = HH·3600 + MM·60 + SS + FF.mmm / rate and infers the rate from the
  file: 60 if any FF exceeds 30, else 30 (the two rates Live Link Face records at). So frames are counted at
  `timecode_rate(fps)` = 30 for takes up to 30 fps and 60 above: with the fractional part every row keeps its
  exact time, whatever the take's own rate (a 25 fps frame at 0.04 s is FF 01.200).
- Values: blendshapes in [0, 1]; head and eye angles in radians. Epic documents no unit for these columns;
  radians is what this project has always written. Importers seen in the wild (pylivelinkface's docs, an
  opentrack Live Link input) treat them as values in about ±1, which radians are for head turns up to ~57°.
  Signs are ARKit's face frame (x = the subject's left, y up, z towards the camera): HeadYaw > 0 turns to the
  subject's left, HeadPitch > 0 looks down, HeadRoll = −rz. Eye yaw/pitch come from the gaze when the take has
  one (same convention), 0 otherwise; eye roll is 0.
- Frames without a face are written, not dropped: every value 0 and BlendShapeCount 0 (a face row says 61).
  Unreal's importer skips the BlendShapeCount column, so the flag costs nothing there; `read_csv(...).found`
  reads it back.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

LLF_BLENDSHAPES = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft",
    "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
LLF_ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                 "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
LLF_COLUMNS = LLF_BLENDSHAPES + LLF_ROTATIONS
LLF_HEADER = ("Timecode", "BlendShapeCount") + LLF_COLUMNS
ARKIT_NAME = {column: column[0].lower() + column[1:] for column in LLF_BLENDSHAPES}  # EyeBlinkLeft → eyeBlinkLeft
FACE_COUNT, NO_FACE_COUNT = len(LLF_COLUMNS), 0


# ---------------------------------------------------------------- time codes
def timecode_rate(fps: float) -> int:
    """The frame rate FF counts at for a take at `fps`: Live Link Face's 30, or 60 above 30 fps."""
    return 60 if fps > 30 else 30


def timecode(seconds_of_day: float, fps: float) -> str:
    """HH:MM:SS:FF.mmm — frame FF within the second at `fps`, .mmm the fraction of that frame (Live Link style)."""
    s = math.floor(seconds_of_day)
    frames = (seconds_of_day - s) * fps
    ff = min(int(frames), max(0, math.ceil(fps) - 1))
    sub = min(round((frames - ff) * 1000), 999)
    s %= 86400
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}.{sub:03d}"


def parse_timecode(text: str, fps: float) -> float:
    """HH:MM:SS:FF.mmm → seconds of the day, as Unreal's importer reads it (FF.mmm / fps)."""
    hh, mm, ss, frames = text.split(":")
    return int(hh) * 3600 + int(mm) * 60 + int(ss) + float(frames) / fps


# ---------------------------------------------------------------- angles
def head_angles_arkit(H: np.ndarray) -> np.ndarray:
    """[..., 3] (yaw, pitch, roll) in radians in ARKit's face frame (x = subject's left, y up, z to the viewer).

    That frame is ours turned 180° about x, which negates rotations about y and z: yaw = −ry (positive: the
    subject turns to their left), pitch = rx (positive: looks down), roll = −rz.
    """
    H = np.asarray(H, dtype=np.float64)
    return np.stack([-H[..., 2], H[..., 1], -H[..., 3]], axis=-1)


def eye_angles_arkit(gaze) -> np.ndarray:
    """Gaze [..., 2 (left, right), 2 (yaw, pitch)] in H's convention → [..., 6] LeftEye yaw/pitch/roll, RightEye
    yaw/pitch/roll as the CSV writes them (yaw negated like the head's, roll 0); NaN (no gaze) → 0."""
    g = np.nan_to_num(np.asarray(gaze, dtype=np.float64), nan=0.0)
    zero = np.zeros(g.shape[:-2])
    return np.stack([-g[..., 0, 0], g[..., 0, 1], zero, -g[..., 1, 0], g[..., 1, 1], zero], axis=-1)


# ---------------------------------------------------------------- writing
def row_values(expressions: dict[str, float] | None, H, gaze=None) -> list[float]:
    """The 61 values of one frame in LLF_COLUMNS order (expressions by ARKit name; a missing one is 0)."""
    if expressions is None or H is None:
        return [0.0] * FACE_COUNT
    values = [float(expressions.get(ARKIT_NAME[c], 0.0)) for c in LLF_BLENDSHAPES]
    values += head_angles_arkit(H).tolist()
    values += eye_angles_arkit(gaze).tolist() if gaze is not None else [0.0] * 6
    return values


def _cell(v: float) -> str:
    text = f"{v:.8f}"
    return "0.00000000" if text == "-0.00000000" else text


def write_csv(path: str | Path, t, H, expressions, fps: float, start_unix: float, found=None, gaze=None,
              timecode_fps: float | None = None) -> None:
    """Write N frames: times t [N] (s, any origin), poses H [N, 6], expressions (N dicts by ARKit name, None for a
    frame without a face), the take's fps and its wall-clock start (the first frame's time of day). found [N]
    (default: every frame whose expressions are not None and whose H is finite) marks the frames with a face;
    gaze [N, 2, 2] optional (NaN where none)."""
    t = np.asarray(t, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64).reshape(len(t), 6)
    if found is None:
        found = np.array([e is not None for e in expressions], dtype=bool) & np.isfinite(H).all(axis=1)
    rate = timecode_fps or timecode_rate(fps)
    start = datetime.fromtimestamp(start_unix)
    day0 = start.hour * 3600 + start.minute * 60 + start.second + start.microsecond / 1e6
    t0 = t[0] if len(t) else 0.0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(LLF_HEADER) + "\n")
        for i in range(len(t)):
            face = bool(found[i])
            values = row_values(expressions[i] if face else None, H[i] if face else None,
                                gaze[i] if face and gaze is not None else None)
            tc = timecode(day0 + t[i] - t0, rate)
            f.write(f"{tc},{FACE_COUNT if face else NO_FACE_COUNT}," + ",".join(map(_cell, values)) + "\n")


def session_found(session) -> np.ndarray:
    """[N] bool: which frames of a recorded session (app.recording.Session) have a face.

    The session's own `found` if it has one; otherwise a frame has a face when its H and values are finite and
    its recorded expressions were not empty (read from frames.jsonl, which load_session turns into zeros)."""
    found = getattr(session, "found", None)
    if found is not None:
        return np.asarray(found, dtype=bool).reshape(len(session))
    ok = np.isfinite(session.H).all(axis=1) & np.isfinite(session.E).all(axis=1)
    from app.recording import FRAMES  # here: app.recording imports this module

    path = Path(session.folder) / FRAMES
    if path.exists():
        empty = []
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    empty.append(not json.loads(line).get("e"))
                except json.JSONDecodeError:
                    break  # the truncated last line load_session skips too
        if len(empty) >= len(session):
            ok &= ~np.asarray(empty[: len(session)], dtype=bool)
    return ok


def export_csv(session, path: str | Path, timecode_fps: float | None = None) -> None:
    """Write a recorded session (app.recording.Session) as a Live Link Face CSV: time of day from the session's
    start, its fps, frames without a face flagged (see the module notes), eye angles from `session.gaze`
    ([N, 2, 2], when the session has one)."""
    found = session_found(session)
    expressions = [session.expressions(i) if found[i] else None for i in range(len(session))]
    write_csv(path, session.t, session.H, expressions, session.manifest["fps"], session.manifest["started_unix"],
              found=found, gaze=getattr(session, "gaze", None), timecode_fps=timecode_fps)


# ---------------------------------------------------------------- reading
@dataclass
class LiveLinkTake:
    """A Live Link Face CSV read back: N rows of the columns in `columns` (the header after the first two)."""
    columns: list[str]
    timecodes: list[str]
    counts: np.ndarray         # [N] int: BlendShapeCount of each row (0: no face, see the module notes)
    values: np.ndarray         # [N, len(columns)] float

    @property
    def found(self) -> np.ndarray:
        return self.counts > 0

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]

    def seconds(self, rate: float | None = None) -> np.ndarray:
        """Each row's time of day (s), with FF counted at `rate` (default: inferred as Unreal does)."""
        if rate is None:
            rate = 60 if any(float(tc.split(":")[3]) > 30 for tc in self.timecodes) else 30
        return np.array([parse_timecode(tc, rate) for tc in self.timecodes])


def read_csv(path: str | Path) -> LiveLinkTake:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    if header[:2] != ["Timecode", "BlendShapeCount"]:
        raise ValueError(f"{path}: not a Live Link Face CSV (header starts {header[:2]})")
    rows = [line.split(",") for line in lines[1:] if line.strip()]
    for k, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {k + 1} has {len(row)} cells, the header {len(header)}")
    return LiveLinkTake(
        columns=header[2:],
        timecodes=[r[0] for r in rows],
        counts=np.array([int(r[1]) for r in rows], dtype=np.int64),
        values=np.array([[float(v) for v in r[2:]] for r in rows], dtype=np.float64).reshape(len(rows), -1),
    )
