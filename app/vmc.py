"""Stream the performance to avatar apps with the VMC protocol (OSC over UDP, default 127.0.0.1:39539).

One OSC bundle per frame, in the order VMC senders use and receivers apply atomically:
    /VMC/Ext/OK 1 · /VMC/Ext/T time · /VMC/Ext/Bone/Pos "Head" px py pz qx qy qz qw
    · /VMC/Ext/Blend/Val name value (one per expression) · /VMC/Ext/Blend/Apply

Our frames → Unity's (left-handed, x right, y up, z forward; the avatar stands where the performer stands and
faces the viewer, not mirrored):
- Our camera and canonical head frame are right-handed with x = the subject's left, y down, z away from the
  camera, i.e. towards the back of the head. The avatar's left is Unity −x, up +y, forward (towards the viewer,
  as the performer faces the camera) +z, so every direction maps by v_unity = −v_ours in both frames.
- Rotation: R_unity = (−I) R (−I)⁻¹ = R. The matrix entries are unchanged and the quaternion is the usual one of
  R; the handedness flip is absorbed by reading it in Unity's axes. Check: yaw ry = +30° (the subject turns to
  their right) gives q = (0, sin 15°, 0, cos 15°) = Unity's Quaternion.Euler(0, 30, 0), which turns the avatar's
  nose from +z towards +x, the avatar's right.
- Position: metres, the head's translation from a calibrated neutral position (the first frame sent unless
  `calibrate(H)` is called). Weak perspective gives the head's depth up to the unknown focal length, so with f in
  pixels per cm the head sits at depth d = d0 · f0 / f, where d0 (`neutral_distance_m`) is the assumed distance
  at calibration; sideways offsets are (t − t0) / f cm at that depth. H's t must be in a fixed image frame (full
  frame, not a moving crop) for the position to mean head motion.
The rotation is sent absolute (a frontal head is identity); VMC receivers treat it as the Head bone's local
rotation, so send no neck/spine bones alongside it.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import UDPClient

from engine.pose import rotation_matrix

log = logging.getLogger(__name__)

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 39539


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


class HeadPosition:
    """Head translation from a neutral pose, in metres in Unity's frame (see the module notes)."""

    def __init__(self, neutral_distance_m: float = 0.6):
        self.d0 = neutral_distance_m
        self.neutral = None

    def calibrate(self, H) -> None:
        self.neutral = np.asarray(H, dtype=np.float64).copy()

    def __call__(self, H) -> tuple[float, float, float]:
        H = np.asarray(H, dtype=np.float64)
        if self.neutral is None:
            self.calibrate(H)
        f0, f = self.neutral[0], H[0]
        x_cm, y_cm = (H[4:6] - self.neutral[4:6]) / f          # sideways, at the head's current depth
        dz_m = self.d0 * (f0 / f - 1.0)                        # smaller f: further away (+z in our frame)
        ours = np.array([x_cm / 100.0, y_cm / 100.0, dz_m])
        return tuple(float(v) for v in -ours)                  # v_unity = −v_ours


def _message(address: str, *args):
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    return builder.build()


class VMCSender:
    """Sends one VMC bundle per frame. Network errors are logged once and never raised (UDP is best effort);
    after one, frames are dropped for RETRY_S seconds rather than retried every frame."""

    RETRY_S = 2.0

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, neutral_distance_m: float = 0.6):
        self.address = (host, port)
        self.position = HeadPosition(neutral_distance_m)
        self._start = time.monotonic()
        self._client = None
        self._warned = False
        self._retry_at = 0.0  # after a failure, wait before trying again (a bad host name costs a DNS lookup)

    def calibrate(self, H) -> None:
        """Make pose H the neutral head position (position (0, 0, 0))."""
        self.position.calibrate(H)

    def bundle(self, H, expressions: dict[str, float], timestamp: float | None = None):
        """The OSC bundle for one frame (see the module notes for its contents and order)."""
        t = time.monotonic() - self._start if timestamp is None else timestamp
        b = OscBundleBuilder(IMMEDIATELY)
        b.add_content(_message("/VMC/Ext/OK", 1))
        b.add_content(_message("/VMC/Ext/T", float(t)))
        b.add_content(_message("/VMC/Ext/Bone/Pos", "Head", *self.position(H), *head_rotation_unity(H)))
        for name, value in expressions.items():
            b.add_content(_message("/VMC/Ext/Blend/Val", str(name), float(value)))
        b.add_content(_message("/VMC/Ext/Blend/Apply"))
        return b.build()

    def send(self, H, expressions: dict[str, float], timestamp: float | None = None) -> bool:
        """Send one frame; timestamp (s) goes out as /VMC/Ext/T (default: seconds since this sender started).

        Returns False if the frame could not be sent (nothing listening is not an error for UDP).
        """
        frame = self.bundle(H, expressions, timestamp)
        if time.monotonic() < self._retry_at:
            return False
        try:
            if self._client is None:
                self._client = UDPClient(*self.address)
            self._client.send(frame)
            return True
        except OSError as e:  # unknown host, unreachable, full buffer: keep tracking, say it once
            if not self._warned:
                log.warning("VMC: cannot send to %s:%d (%s); further errors are silent", *self.address, e)
                self._warned = True
            self._retry_at = time.monotonic() + self.RETRY_S
            return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
