"""Stream in iFacialMocap's UDP text format (what VTube Studio, VNyan and Warudo accept from an iPhone).

Format (iFacialMocap's developer page, https://www.ifacialmocap.com/for-developer/): one UTF-8 datagram per frame
to UDP port 49983 of the receiving PC,

    mouthSmile_R-0|eyeLookOut_L-0|...|mouthLeft-1|=head#X,Y,Z,px,py,pz|rightEye#X,Y,Z|leftEye#X,Y,Z|

- blendshapes `name-value` joined by '|', value an integer 0..100; names are ARKit's with the side suffix
  "Left"/"Right" written "_L"/"_R" (eyeBlink_L, mouthSmile_R, browOuterUp_L...), except mouthLeft, mouthRight,
  jawLeft and jawRight, whose side is the whole name (IFM_NAMES, checked against the page's sample frame);
- head: Euler angles in degrees ("Angle-related data is sent in degrees, not radians") then the position;
  eyes: Euler angles in degrees.

Axes (ARKit's face frame, which iFacialMocap reports: x = the subject's left, y up, z towards the camera). The
page's sample frame shows eyeLookDown ≈ 17 with both eyes' X ≈ +6 and eyeLookIn_R with rightEye Y > 0, i.e.
X > 0 looks down and Y > 0 turns towards the subject's left. Our frame (x = subject's left, y down, z away from the
camera) is ARKit's turned 180° about x, so with H's angles (R = Rz·Ry·Rx):
    X = rx (pitch, > 0 down)    Y = −ry (yaw, > 0 towards the subject's left)    Z = −rz (roll)
and a gaze (yaw, pitch) in H's convention becomes X = pitch, Y = −yaw, Z = 0. The position is in metres in the
same frame, from the calibrated neutral pose (app.senders.HeadOffset) placed `neutral_distance_m` in front of
the camera (z = −distance; the page's sample has z ≈ −0.66), so receivers that calibrate a rest position see
the head's motion.

The format has no "face lost" field: `send_lost` sends nothing, and receivers notice the silence (an iPhone that
loses the face behaves the same way from the receiver's side).
"""
from __future__ import annotations

import math

import numpy as np

from app.senders import HeadOffset, UDPSender, gaze_pair
from export.expressions import ARKIT_NAMES

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 49983
WHOLE_NAME_SIDES = {"mouthLeft", "mouthRight", "jawLeft", "jawRight"}


def ifm_name(arkit_name: str) -> str:
    """ARKit blendshape name → iFacialMocap's spelling (eyeBlinkLeft → eyeBlink_L; mouthLeft unchanged)."""
    if arkit_name in WHOLE_NAME_SIDES:
        return arkit_name
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if arkit_name.endswith(side):
            return arkit_name[: -len(side)] + suffix
    return arkit_name


IFM_NAMES = {n: ifm_name(n) for n in ARKIT_NAMES}


def _num(v: float) -> str:
    """Shortest fixed-point text with up to 6 decimals ("12.5", "0", "-0.030653")."""
    text = f"{float(v):.6f}".rstrip("0").rstrip(".")
    return "0" if float(text) == 0 else text


class IFacialMocapSender(UDPSender):
    """Sends each tracked frame as one iFacialMocap text datagram (see the module notes)."""

    PROTOCOL = "iFacialMocap"
    DEFAULT_HOST, DEFAULT_PORT = DEFAULT_HOST, DEFAULT_PORT

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, neutral_distance_m: float = 0.6):
        super().__init__(host, port)
        self.position = HeadOffset(neutral_distance_m)

    def calibrate(self, H) -> None:
        self.position.calibrate(H)

    def text(self, H, expressions: dict[str, float], gaze=None) -> str:
        """One frame in iFacialMocap's format: every ARKit name (0 where missing), then head and eyes."""
        H = np.asarray(H, dtype=np.float64)
        shapes = "|".join(f"{IFM_NAMES[n]}-{round(float(np.clip(expressions.get(n, 0.0), 0, 1)) * 100)}"
                          for n in ARKIT_NAMES)
        pitch, yaw, roll = (math.degrees(a) for a in (H[1], -H[2], -H[3]))
        x, y, z = self.position.offset(H)
        position = (x, -y, -(self.position.d0 + z))  # ours → ARKit (y up, z towards the camera)
        eyes = gaze_pair(gaze) or ((0.0, 0.0), (0.0, 0.0))
        left, right = ((math.degrees(p), math.degrees(-w), 0.0) for w, p in eyes)
        head = ",".join(_num(v) for v in (pitch, yaw, roll, *position))
        return (f"{shapes}|=head#{head}|rightEye#{','.join(map(_num, right))}"
                f"|leftEye#{','.join(map(_num, left))}|")

    def send(self, H, expressions: dict[str, float], gaze=None, timestamp: float | None = None) -> bool:
        """Send one tracked frame (the format carries no time stamp). False if it could not be sent."""
        return self.transmit([self.text(H, expressions, gaze).encode("utf-8")])

    def send_lost(self, timestamp: float | None = None) -> bool:
        """Nothing to send: the format cannot say "no face"; receivers notice the pause (returns False)."""
        return False
