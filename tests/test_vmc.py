"""VMC output as receivers see it (python-osc server and a plain UDP socket on 127.0.0.1), the VRM expression
mapping, and the one sender interface (app.senders: spec parsing, registry)."""
import math
import socket
import threading
import time

import numpy as np
import pytest

from app.senders import Sender, open_sender, parse_spec
from app.vmc import MAX_DATAGRAM, VMCSender, half_rotation, pack_bundles
from engine.errors import UserError
from export.expressions import ARKIT_NAMES, VRM_NAMES, vrm_expressions

EXPRESSIONS = dict.fromkeys(ARKIT_NAMES, 0.0) | {"jawOpen": 0.25, "eyeBlinkLeft": 0.75, "mouthSmileLeft": 0.5}


def _pose(rx=0.0, ry=0.0, rz=0.0, f=10.0, tx=128.0, ty=128.0):
    return np.array([f, math.radians(rx), math.radians(ry), math.radians(rz), tx, ty])


class _OscReceiver:
    """python-osc's ThreadingOSCUDPServer on a free port, keeping each datagram (raw bytes and its messages)."""

    def __init__(self):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_packet import OscPacket
        from pythonosc.osc_server import ThreadingOSCUDPServer

        self.datagrams, self.lock = [], threading.Lock()
        outer = self

        class Keep(Dispatcher):
            def call_handlers_for_packet(self, data, client_address):
                messages = [(m.message.address, list(m.message.params)) for m in OscPacket(data).messages]
                with outer.lock:
                    outer.datagrams.append((bytes(data), messages))
                return []

        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), Keep())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def wait(self, n, timeout=5.0):
        deadline = time.time() + timeout
        while len(self.datagrams) < n and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # nothing more should come
        return self.datagrams

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _frames(datagrams):
    """Split the received messages into frames: each frame starts with /VMC/Ext/OK."""
    frames = []
    for _, messages in datagrams:
        for address, args in messages:
            if address == "/VMC/Ext/OK":
                frames.append([])
            frames[-1].append((address, args))
    return frames


def test_frames_and_loss_as_an_osc_server_sees_them():
    with _OscReceiver() as rx:
        sender = VMCSender("127.0.0.1", rx.port)
        poses = [_pose(ry=30), _pose(ry=30, tx=148.0, ty=138.0), _pose(ry=30, f=5.0)]
        n = 0
        for k, H in enumerate(poses):
            datagrams = sender.datagrams(H, EXPRESSIONS, timestamp=k / 30)
            n += len(datagrams)
            assert sender.send(H, EXPRESSIONS, timestamp=k / 30)
        assert sender.send_lost(timestamp=3 / 30)
        frames = _frames(rx.wait(n + 1))
        sender.close()
    assert len(frames) == 4
    s, c = math.sin(math.radians(15)), math.cos(math.radians(15))
    head_positions, roots = [], []
    for k, frame in enumerate(frames[:3]):
        addresses = [a for a, _ in frame]
        assert addresses[:3] == ["/VMC/Ext/OK", "/VMC/Ext/T", "/VMC/Ext/Root/Pos"]
        assert addresses[-1] == "/VMC/Ext/Blend/Apply" and addresses.count("/VMC/Ext/Blend/Apply") == 1
        args = dict(frame)
        # /VMC/Ext/OK loaded=1, calibrated (the first frame set the neutral pose), mode 0, tracked: all ints
        assert args["/VMC/Ext/OK"] == [1, 3, 0, 1] and all(type(v) is int for v in args["/VMC/Ext/OK"])
        assert args["/VMC/Ext/T"] == [pytest.approx(k / 30)] and type(args["/VMC/Ext/T"][0]) is float
        name, *root = args["/VMC/Ext/Root/Pos"]
        assert name == "root" and len(root) == 7 and all(type(v) is float for v in root)
        assert root[3:] == [0.0, 0.0, 0.0, 1.0]
        roots.append(root[:3])
        bones = {a[0]: a[1:] for addr, a in frame if addr == "/VMC/Ext/Bone/Pos"}
        assert set(bones) == {"Head", "LeftEye", "RightEye"}
        assert all(len(v) == 7 and all(type(x) is float for x in v) for v in bones.values())
        assert np.allclose(bones["Head"][3:], (0, s, 0, c), atol=1e-6)
        assert np.allclose(bones["LeftEye"][3:], (0, 0, 0, 1)) and np.allclose(bones["RightEye"][3:], (0, 0, 0, 1))
        assert bones["LeftEye"][0] < 0 < bones["RightEye"][0]   # the avatar's left eye sits at Unity −x
        head_positions.append(bones["Head"][:3])
        values = [a for addr, a in frame if addr == "/VMC/Ext/Blend/Val"]
        assert all(type(n) is str and type(v) is float for n, v in values)
        names = [n for n, _ in values]
        assert names == list(ARKIT_NAMES) + list(VRM_NAMES)      # "both": ARKit first, then VRM, exact case
        got = dict(values)
        assert got["jawOpen"] == 0.25 and got["Blink_L"] == pytest.approx(0.75) and got["Blink_R"] == 0.0
    # The head bone's position is a constant local offset; the head's translation moves the root.
    assert head_positions[0] == head_positions[1] == head_positions[2]
    assert roots[0] == pytest.approx([0, 0, 0], abs=1e-6)
    assert roots[1] == pytest.approx([-0.02, -0.01, 0.0], abs=1e-6)   # 2 cm to the subject's left, 1 cm down
    assert roots[2] == pytest.approx([0, 0, -0.6], abs=1e-6)          # half the scale: 0.6 m further away
    lost = frames[3]
    assert [a for a, _ in lost] == ["/VMC/Ext/OK", "/VMC/Ext/T"]
    assert lost[0][1] == [1, 3, 0, 0]                                  # tracking state flips to 0


def test_every_datagram_fits_in_1500_bytes():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2.0)
    sender = VMCSender("127.0.0.1", rx.getsockname()[1])
    gaze = {"left": (0.1, -0.05), "right": (0.1, -0.05)}
    sizes = []
    try:
        assert sender.send(_pose(rx=10, ry=-20, rz=5), EXPRESSIONS, gaze=gaze)
        assert sender.send_lost()
        while True:
            try:
                sizes.append(len(rx.recv(65536)))
            except TimeoutError:
                break
    finally:
        sender.close()
        rx.close()
    # 52 ARKit + 13 VRM values do not fit in one datagram: three bundles for the frame, one for the loss.
    assert len(sizes) == 4 and max(sizes) <= MAX_DATAGRAM <= 1500
    assert sum(sizes[:3]) > MAX_DATAGRAM


def test_bundles_split_in_order_and_stay_valid():
    from pythonosc.osc_bundle import OscBundle

    sender = VMCSender(max_datagram=400)
    messages = sender.messages(_pose(), EXPRESSIONS, timestamp=1.0)
    bundles = sender.datagrams(_pose(), EXPRESSIONS, timestamp=1.0)
    assert len(bundles) > 5 and all(len(b) <= 400 for b in bundles)
    parsed = [m.dgram for b in bundles for m in OscBundle(b)]
    assert parsed == messages
    with pytest.raises(ValueError):
        pack_bundles([b"x" * 500], limit=400)


@pytest.mark.parametrize("which,expected", [("arkit", list(ARKIT_NAMES)), ("vrm", list(VRM_NAMES))])
def test_expression_sets(which, expected):
    sender = VMCSender(expressions=which)
    assert list(sender.blend_values(EXPRESSIONS)) == expected
    with pytest.raises(ValueError):
        VMCSender(expressions="ARKit")


def _bones(sender, H, gaze=None):
    from pythonosc.osc_message import OscMessage

    out = {}
    for m in sender.messages(H, EXPRESSIONS, gaze=gaze):
        msg = OscMessage(m)
        if msg.address == "/VMC/Ext/Bone/Pos":
            out[msg.params[0]] = np.array(msg.params[1:])
    return out


def test_gaze_turns_the_eye_bones():
    sender = VMCSender()
    yaw, pitch = 0.2, 0.1
    bones = _bones(sender, _pose(), gaze={"left": (yaw, 0.0), "right": (0.0, pitch)})
    # yaw > 0 turns like H's ry > 0 (towards the subject's right: Unity +y rotation); pitch like rx (down)
    assert np.allclose(bones["LeftEye"][3:], (0, math.sin(yaw / 2), 0, math.cos(yaw / 2)), atol=1e-6)
    assert np.allclose(bones["RightEye"][3:], (math.sin(pitch / 2), 0, 0, math.cos(pitch / 2)), atol=1e-6)
    same = _bones(sender, _pose(), gaze=[[yaw, 0.0], [0.0, pitch]])
    assert np.allclose(same["LeftEye"], bones["LeftEye"]) and np.allclose(same["RightEye"], bones["RightEye"])


def test_neck_takes_half_the_head_rotation():
    sender = VMCSender(neck=True)
    bones = _bones(sender, _pose(ry=40))
    s, c = math.sin(math.radians(10)), math.cos(math.radians(10))
    assert np.allclose(bones["Neck"][3:], (0, s, 0, c), atol=1e-6)
    assert np.allclose(bones["Head"][3:], (0, s, 0, c), atol=1e-6)
    assert np.allclose(half_rotation((0.0, 0.0, 0.0, 1.0)), (0, 0, 0, 1))


def test_custom_bone_positions():
    sender = VMCSender(bone_positions={"Head": (0.0, 0.12, 0.01)})
    bones = _bones(sender, _pose(tx=300.0))
    assert np.allclose(bones["Head"][:3], (0.0, 0.12, 0.01))


def test_calibration_state_before_any_frame():
    from pythonosc.osc_bundle import OscBundle

    sender = VMCSender()
    (ok, t), = [[m.params for m in OscBundle(b)] for b in sender.lost_datagrams(timestamp=0.5)]
    assert ok == [1, 0, 0, 0] and t == [0.5]
    sender.calibrate(_pose())
    (ok, _), = [[m.params for m in OscBundle(b)] for b in sender.lost_datagrams()]
    assert ok == [1, 3, 0, 0]


# ---------------------------------------------------------------- VRM mapping
def test_vrm_mapping():
    assert vrm_expressions({}) == dict.fromkeys(VRM_NAMES, 0.0)
    v = vrm_expressions({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 0.4})
    assert list(v) == list(VRM_NAMES)
    # the common closure is Blink, the rest one-sided on the subject's (= the avatar's) side
    assert v["Blink"] == pytest.approx(0.4) and v["Blink_L"] == pytest.approx(0.6) and v["Blink_R"] == 0.0
    smile = vrm_expressions({"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0})
    assert smile["Fun"] == 1.0 and smile["Joy"] == 0.0
    closed_smile = vrm_expressions({"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0,
                                    "eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0})
    assert closed_smile["Joy"] == 1.0 and closed_smile["Fun"] == 0.0 and closed_smile["Blink"] == 0.0
    vowels = vrm_expressions({"jawOpen": 0.8})
    assert vowels["A"] == pytest.approx(0.8) and vowels["O"] == vowels["U"] == 0.0
    o = vrm_expressions({"jawOpen": 0.5, "mouthFunnel": 1.0})
    assert o["O"] == 1.0 and o["A"] == 0.0
    assert vrm_expressions({"browDownLeft": 1.0, "browDownRight": 1.0})["Angry"] == 1.0
    assert vrm_expressions({"browOuterUpLeft": 1.0, "browOuterUpRight": 1.0, "jawOpen": 1.0})["Surprised"] == 1.0
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = vrm_expressions(dict(zip(ARKIT_NAMES, rng.uniform(-0.5, 1.5, len(ARKIT_NAMES)))))
        assert all(0.0 <= x <= 1.0 for x in values.values())


# ---------------------------------------------------------------- the sender interface
def test_parse_spec_defaults_and_forms():
    assert parse_spec("vmc") == ("vmc", "127.0.0.1", 39539)
    assert parse_spec("vmc:192.168.1.5:39540") == ("vmc", "192.168.1.5", 39540)
    assert parse_spec("VMC:studio.local") == ("vmc", "studio.local", 39539)
    assert parse_spec("ifacialmocap:10.0.0.2") == ("ifacialmocap", "10.0.0.2", 49983)
    assert parse_spec("ifacialmocap:10.0.0.2:50000") == ("ifacialmocap", "10.0.0.2", 50000)
    assert parse_spec("vmc:[::1]:39540") == ("vmc", "::1", 39540)


@pytest.mark.parametrize("spec,words", [
    ("vmc:host:0", "out of range 1..65535"), ("vmc:host:65536", "out of range 1..65535"),
    ("ifacialmocap:host:-1", "out of range"), ("vmc:host:abc", "not a number"),
    ("osc:host", "unknown stream protocol"), ("vmc::39539", "empty host"), ("vmc:[::1", "missing ']'"),
])
def test_parse_spec_errors_are_one_line(spec, words):
    with pytest.raises(UserError) as err:
        parse_spec(spec)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_open_sender_builds_the_protocol():
    from app.ifacialmocap import IFacialMocapSender

    vmc = open_sender("vmc:127.0.0.1:39600", expressions="vrm")
    ifm = open_sender("ifacialmocap:127.0.0.1", expressions="vrm")  # an option it does not take is ignored
    try:
        assert isinstance(vmc, VMCSender) and isinstance(vmc, Sender) and vmc.expressions == "vrm"
        assert vmc.address == ("127.0.0.1", 39600)
        assert isinstance(ifm, IFacialMocapSender) and ifm.address == ("127.0.0.1", 49983)
    finally:
        vmc.close()
        ifm.close()


@pytest.mark.parametrize("host,port", [("no-such-host.invalid", 39539), ("127.0.0.1", 0)])
def test_network_errors_never_raise(caplog, host, port):
    sender = VMCSender(host, port)
    assert sender.send(_pose(), EXPRESSIONS) is False
    assert sender.send_lost() is False  # within RETRY_S: dropped without trying
    sender._retry_at = 0.0
    assert sender.send(_pose(), EXPRESSIONS) is False
    assert sum("VMC" in r.message for r in caplog.records) == 1
