"""iFacialMocap UDP output, as a plain UDP socket on 127.0.0.1 receives it."""
import math
import socket

import numpy as np
import pytest

from app.ifacialmocap import DEFAULT_PORT, IFM_NAMES, IFacialMocapSender, ifm_name
from app.senders import Sender
from export.expressions import ARKIT_NAMES

EXPRESSIONS = dict.fromkeys(ARKIT_NAMES, 0.0) | {"jawOpen": 0.254, "eyeBlinkLeft": 0.75, "mouthLeft": 1.0,
                                                   "browOuterUpRight": 0.333}


def _pose(rx=0.0, ry=0.0, rz=0.0, f=10.0, tx=128.0, ty=128.0):
    return np.array([f, math.radians(rx), math.radians(ry), math.radians(rz), tx, ty])


def _parse(text: str):
    """iFacialMocap text → ({name: int}, {"head": [...], "rightEye": [...], "leftEye": [...]})."""
    shapes_part, _, rest = text.partition("|=")
    shapes = {}
    for item in shapes_part.split("|"):
        name, _, value = item.rpartition("-")
        shapes[name] = value
    assert rest.endswith("|")
    blocks = {}
    for block in rest[:-1].split("|"):
        key, _, values = block.partition("#")
        blocks[key] = [float(v) for v in values.split(",")]
    return shapes, blocks


def test_names_follow_ifacialmocap_spelling():
    assert len(set(IFM_NAMES.values())) == 52
    assert ifm_name("eyeBlinkLeft") == "eyeBlink_L" and ifm_name("mouthSmileRight") == "mouthSmile_R"
    assert ifm_name("browOuterUpLeft") == "browOuterUp_L" and ifm_name("browInnerUp") == "browInnerUp"
    assert [ifm_name(n) for n in ("mouthLeft", "mouthRight", "jawLeft", "jawRight")] == \
        ["mouthLeft", "mouthRight", "jawLeft", "jawRight"]
    # every name of the sample frame on iFacialMocap's developer page
    sample = ["mouthSmile_R", "eyeLookOut_L", "mouthUpperUp_L", "eyeWide_R", "mouthClose", "mouthPucker", "mouthRollLower", "eyeBlink_R", "eyeLookDown_L", "cheekSquint_R", "eyeBlink_L", "tongueOut", "jawRight", "eyeLookIn_R", "cheekSquint_L", "mouthDimple_L", "mouthPress_L", "eyeSquint_L", "mouthRight", "mouthShrugLower", "eyeLookUp_R", "eyeLookOut_R", "mouthPress_R", "cheekPuff", "jawForward", "mouthLowerDown_L", "mouthFrown_L", "mouthShrugUpper", "browOuterUp_L", "browInnerUp", "mouthDimple_R", "browDown_R", "mouthUpperUp_R", "mouthRollUpper", "mouthFunnel", "mouthStretch_R", "mouthFrown_R", "eyeLookDown_R", "jawOpen", "jawLeft", "browDown_L", "mouthSmile_L", "noseSneer_R", "mouthLowerDown_R", "noseSneer_L", "eyeWide_L", "mouthStretch_L", "browOuterUp_R", "eyeLookIn_L", "eyeSquint_R", "eyeLookUp_L", "mouthLeft"]
    assert sorted(sample) == sorted(IFM_NAMES.values())


def test_frames_over_udp():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2.0)
    sender = IFacialMocapSender("127.0.0.1", rx.getsockname()[1])
    assert isinstance(sender, Sender) and DEFAULT_PORT == 49983
    received = []
    try:
        assert sender.send(_pose(rx=10, ry=20, rz=-5), EXPRESSIONS,
                           gaze={"left": (0.1, 0.2), "right": (-0.1, 0.05)})
        assert sender.send(_pose(tx=148.0, ty=138.0), EXPRESSIONS)
        assert sender.send_lost() is False       # the format has no "lost": nothing is sent
        while True:
            try:
                received.append(rx.recv(65536))
            except TimeoutError:
                break
    finally:
        sender.close()
        rx.close()
    assert len(received) == 2 and all(len(d) <= 1472 for d in received)
    shapes, blocks = _parse(received[0].decode("utf-8"))
    assert len(shapes) == 52 and all(v.isdigit() and 0 <= int(v) <= 100 for v in shapes.values())
    assert shapes["jawOpen"] == "25" and shapes["eyeBlink_L"] == "75" and shapes["mouthLeft"] == "100"
    assert shapes["browOuterUp_R"] == "33" and shapes["tongueOut"] == "0"
    assert list(blocks) == ["head", "rightEye", "leftEye"]
    assert len(blocks["head"]) == 6 and len(blocks["rightEye"]) == len(blocks["leftEye"]) == 3
    # degrees; ARKit's face frame: X = pitch (down > 0), Y = −yaw (towards the subject's left > 0), Z = −roll
    assert blocks["head"][:3] == pytest.approx([10.0, -20.0, 5.0], abs=1e-4)
    assert blocks["head"][3:] == pytest.approx([0.0, 0.0, -0.6], abs=1e-6)   # neutral: 0.6 m in front
    assert blocks["leftEye"] == pytest.approx([math.degrees(0.2), math.degrees(-0.1), 0.0], abs=1e-4)
    assert blocks["rightEye"] == pytest.approx([math.degrees(0.05), math.degrees(0.1), 0.0], abs=1e-4)
    _, moved = _parse(received[1].decode("utf-8"))
    # 2 cm towards the subject's left (x), 1 cm down (y up in ARKit's frame); no gaze: eyes at 0
    assert moved["head"][3:] == pytest.approx([0.02, -0.01, -0.6], abs=1e-6)
    assert moved["rightEye"] == moved["leftEye"] == [0.0, 0.0, 0.0]


def test_calibrate_sets_the_neutral_position():
    sender = IFacialMocapSender()
    sender.calibrate(_pose(tx=100.0))
    _, blocks = _parse(sender.text(_pose(tx=100.0), {}))
    assert blocks["head"][3:] == pytest.approx([0.0, 0.0, -0.6])
    shapes, _ = _parse(sender.text(_pose(), {}))
    assert set(shapes.values()) == {"0"}


def test_network_errors_never_raise(caplog):
    sender = IFacialMocapSender("no-such-host.invalid")
    assert sender.send(_pose(), EXPRESSIONS) is False
    sender._retry_at = 0.0
    assert sender.send(_pose(), EXPRESSIONS) is False
    assert sum("iFacialMocap" in r.message for r in caplog.records) == 1
