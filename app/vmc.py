"""Stream the performance to avatar apps with the VMC protocol (OSC over UDP, default 127.0.0.1:39539).

What one tracked frame sends (protocol.vmc.info, Marionette spec; checked against EVMC4U's ExternalReceiver
with its default settings), as OSC bundles of at most MAX_DATAGRAM bytes, in this order:

    /VMC/Ext/OK   (i)1 (i)calibration state (i)0 (i)tracking    loaded; 3 = calibrated once a neutral pose is
                                                                set, else 0; mode 0 = normal (EVMC4U ties its
                                                                MR scale option to the mode); tracking 1 / 0
    /VMC/Ext/T    (f)seconds                                    sender time
    /VMC/Ext/Root/Pos (s)"root" (f)p.xyz (f)q.xyzw              the head's translation from the neutral pose
                                                                moves the whole avatar; rotation identity
    /VMC/Ext/Bone/Pos (s)"Head" (f)p.xyz (f)q.xyzw              the head rotation; p = the bone's local position
    /VMC/Ext/Bone/Pos (s)"LeftEye", "RightEye" ...              gaze rotations (identity without gaze)
    /VMC/Ext/Blend/Val (s)name (f)value                         ARKit's names and/or VRM's presets
    /VMC/Ext/Blend/Apply                                        last, after every value

A frame without a face (`send_lost`) sends only /VMC/Ext/OK with tracking 0 and /VMC/Ext/T; the receiver keeps
the last pose. The bundles of one frame are cut where the next message would not fit, so the first one holds OK,
T, the root and the bones and the Apply comes last; receivers collect values until Apply (EVMC4U does).

Bone positions. Receivers apply /VMC/Ext/Bone/Pos positions as the bone's *local* position (EVMC4U's default
BonePositionSynchronize = true sets `transform.localPosition` from it), so the tracked translation must never
go there (it would pull the head off the neck) and (0, 0, 0) would sink the head into the neck joint. We send
constant local offsets typical of a VRoid-sized humanoid (BONE_POSITIONS); pass `bone_positions` with your
avatar's own values (Unity inspector: the bone's localPosition) or turn bone-position sync off in the receiver
if the defaults misplace the head or eyes.

Our frames → Unity's (left-handed, x right, y up, z forward; the avatar stands where the performer stands and
faces the viewer, not mirrored):
- Our camera and canonical head frame are right-handed with x = the subject's left, y down, z away from the
  camera, i.e. towards the back of the head. The avatar's left is Unity −x, up +y, forward (towards the viewer,
  as the performer faces the camera) +z, so every direction maps by v_unity = −v_ours in both frames.
- Rotation: R_unity = (−I) R (−I)⁻¹ = R. The matrix entries are unchanged and the quaternion is the usual one of
  R; the handedness flip is absorbed by reading it in Unity's axes. Check: yaw ry = +30° (the subject turns to
  their right) gives q = (0, sin 15°, 0, cos 15°) = Unity's Quaternion.Euler(0, 30, 0), which turns the avatar's
  nose from +z towards +x, the avatar's right. Eye rotations use the same rule on R(pitch, yaw, 0).
- Position: metres, the head's translation from a calibrated neutral position (app.senders.HeadOffset).
The head rotation is sent absolute (a frontal head is identity) as the Head bone's local rotation; with
`neck=True` it is split evenly between Neck and Head (each gets half the angle about the same axis).
"""
from __future__ import annotations

import math
import struct
import time

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

from app.senders import HeadOffset, UDPSender, gaze_pair
from engine.pose import rotation_matrix
from export.expressions import vrm_expressions

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 39539
# 1500 B Ethernet MTU − 20 B IPv4 header − 8 B UDP header: the largest payload that is never fragmented.
MAX_DATAGRAM = 1472
EXPRESSION_SETS = ("both", "arkit", "vrm")
CALIBRATED, UNCALIBRATED = 3, 0  # VMC calibration states (WaitingForCalibrating = 1 and Calibrating = 2 unused)

# Local bone positions (metres, Unity axes, parent bone's frame) of a typical ~1.5 m VRoid humanoid: Head above
# the Neck joint, the eyes above and in front of the Head joint (the avatar's left eye at −x).
BONE_POSITIONS = {
    "Neck": (0.0, 0.10, 0.0),
    "Head": (0.0, 0.09, 0.0),
    "LeftEye": (-0.03, 0.065, 0.03),
    "RightEye": (0.03, 0.065, 0.03),
}
IDENTITY = (0.0, 0.0, 0.0, 1.0)


def quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix [3,3] → unit quaternion (x, y, z, w), w ≥ 0 (Shepperd's method, stable for all angles)."""
    m = np.asarray(R, dtype=np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * math.sqrt(1.0 + tr)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[i], q[j], q[k] = s / 4, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
        q[3] = (m[k, j] - m[j, k]) / s
    q = np.array(q) / np.linalg.norm(q)
    return tuple(float(v) for v in (q if q[3] >= 0 else -q))


def head_rotation_unity(H) -> tuple[float, float, float, float]:
    """Head bone quaternion (x, y, z, w) in Unity's frame for pose H = (f, rx, ry, rz, tx, ty)."""
    return quaternion(rotation_matrix(np.asarray(H, dtype=np.float64)[1:4]))


def eye_rotation_unity(yaw: float, pitch: float) -> tuple[float, float, float, float]:
    """Eye bone quaternion for a gaze (yaw, pitch) in H's convention (yaw > 0: towards the subject's right)."""
    return quaternion(rotation_matrix(np.array([pitch, yaw, 0.0])))


def half_rotation(q) -> tuple[float, float, float, float]:
    """The quaternion turning half as far about the same axis (q·q of the result is q; w ≥ 0 assumed)."""
    x, y, z, w = q
    n = math.sqrt(2.0 * (1.0 + w))
    return (x / n, y / n, z / n, (1.0 + w) / n)


class HeadPosition(HeadOffset):
    """Head translation from a neutral pose, in metres in Unity's frame (v_unity = −v_ours; see the module notes)."""

    def __call__(self, H) -> tuple[float, float, float]:
        return tuple(float(v) for v in -self.offset(H))


def _message(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    return builder.build().dgram


def pack_bundles(messages: list[bytes], limit: int = MAX_DATAGRAM) -> list[bytes]:
    """OSC bundles ('#bundle', time tag "immediately", size-prefixed elements) of at most `limit` bytes each,
    keeping the messages' order and cutting only where the next one would not fit."""
    header = b"#bundle\x00" + struct.pack(">Q", 1)
    bundles, current = [], header
    for m in messages:
        element = struct.pack(">i", len(m)) + m
        if len(header) + len(element) > limit:
            raise ValueError(f"an OSC message of {len(m)} bytes does not fit in a {limit}-byte datagram")
        if len(current) + len(element) > limit:
            bundles.append(current)
            current = header
        current += element
    if current != header:
        bundles.append(current)
    return bundles


class VMCSender(UDPSender):
    """Sends each frame as VMC bundles (see the module notes). `expressions` picks the blendshape names sent:
    "arkit" (the 52 names as given, for perfect-sync avatars), "vrm" (VRM 0.x presets computed by
    export.expressions.vrm_expressions) or "both" (ARKit first, then VRM)."""

    PROTOCOL = "VMC"
    DEFAULT_HOST, DEFAULT_PORT = DEFAULT_HOST, DEFAULT_PORT

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, neutral_distance_m: float = 0.6,
                 expressions: str = "both", neck: bool = False, bone_positions: dict | None = None,
                 max_datagram: int = MAX_DATAGRAM):
        if expressions not in EXPRESSION_SETS:
            raise ValueError(f"expressions must be one of {EXPRESSION_SETS}, not {expressions!r}")
        super().__init__(host, port)
        self.position = HeadPosition(neutral_distance_m)
        self.expressions = expressions
        self.neck = neck
        self.bone_positions = {**BONE_POSITIONS, **(bone_positions or {})}
        self.max_datagram = max_datagram
        self._start = time.monotonic()

    def calibrate(self, H) -> None:
        """Make pose H the neutral head position (root position (0, 0, 0))."""
        self.position.calibrate(H)

    # -- building the datagrams ------------------------------------------------------------------------------
    def _time(self, timestamp: float | None) -> float:
        return float(time.monotonic() - self._start if timestamp is None else timestamp)

    def _status(self, tracking: int, timestamp: float | None) -> list[bytes]:
        calibration = UNCALIBRATED if self.position.neutral is None else CALIBRATED
        return [_message("/VMC/Ext/OK", 1, calibration, 0, tracking), _message("/VMC/Ext/T", self._time(timestamp))]

    def _bone(self, name: str, rotation) -> bytes:
        return _message("/VMC/Ext/Bone/Pos", name, *(float(v) for v in self.bone_positions[name]),
                        *(float(v) for v in rotation))

    def blend_values(self, expressions: dict[str, float]) -> dict[str, float]:
        """The /VMC/Ext/Blend/Val names and values sent for these ARKit expressions, in sending order."""
        out = {}
        if self.expressions in ("both", "arkit"):
            out.update((str(k), float(v)) for k, v in expressions.items())
        if self.expressions in ("both", "vrm"):
            out.update(vrm_expressions(expressions))
        return out

    def messages(self, H, expressions: dict[str, float], gaze=None, timestamp: float | None = None) -> list[bytes]:
        """The OSC messages of one tracked frame, in sending order (see the module notes)."""
        root = self.position(H)
        head = head_rotation_unity(H)
        out = self._status(1, timestamp)
        out.append(_message("/VMC/Ext/Root/Pos", "root", *root, *IDENTITY))
        if self.neck:
            half = half_rotation(head)
            out += [self._bone("Neck", half), self._bone("Head", half)]
        else:
            out.append(self._bone("Head", head))
        eyes = gaze_pair(gaze)
        left, right = (IDENTITY, IDENTITY) if eyes is None else (eye_rotation_unity(*eyes[0]),
                                                                   eye_rotation_unity(*eyes[1]))
        out += [self._bone("LeftEye", left), self._bone("RightEye", right)]
        out += [_message("/VMC/Ext/Blend/Val", n, v) for n, v in self.blend_values(expressions).items()]
        out.append(_message("/VMC/Ext/Blend/Apply"))
        return out

    def datagrams(self, H, expressions: dict[str, float], gaze=None, timestamp: float | None = None) -> list[bytes]:
        """One frame as UDP payloads (OSC bundles of at most max_datagram bytes)."""
        return pack_bundles(self.messages(H, expressions, gaze, timestamp), self.max_datagram)

    def lost_datagrams(self, timestamp: float | None = None) -> list[bytes]:
        return pack_bundles(self._status(0, timestamp), self.max_datagram)

    # -- sending ----------------------------------------------------------------------------------------------
    def send(self, H, expressions: dict[str, float], gaze=None, timestamp: float | None = None) -> bool:
        """Send one tracked frame; timestamp (s) goes out as /VMC/Ext/T (default: seconds since this sender
        started). Returns False if the frame could not be sent (nothing listening is not an error for UDP)."""
        return self.transmit(self.datagrams(H, expressions, gaze, timestamp))

    def send_lost(self, timestamp: float | None = None) -> bool:
        """Tell the receiver this frame has no face (/VMC/Ext/OK tracking 0); it keeps the last pose."""
        return self.transmit(self.lost_datagrams(timestamp))
