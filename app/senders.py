"""One interface for every live output protocol (VMC, iFacialMocap...), and `open_sender("vmc:HOST:PORT")`.

A sender gets one call per tracked frame and one per frame without a face:

    send(H, expressions, gaze=None, timestamp=None) -> bool    a face: pose H = (f, rx, ry, rz, tx, ty), ARKit
                                                              {name: value in [0, 1]}, optional gaze, time (s)
    send_lost(timestamp=None) -> bool                          no face this frame (the receiver may show it)
    calibrate(H)                                               make H the neutral head position
    close()

Both return False when nothing went out (network error, or a protocol with no way to say "lost"); a sender never
raises on network errors (UDP is best effort): it logs the first one and drops frames for RETRY_S seconds.

Gaze, when the tracker has it, is per eye (yaw, pitch) in radians in the convention of H's angles: yaw > 0 turns
the eye towards the subject's right (like ry), pitch > 0 looks down (like rx). Pass {"left": (yaw, pitch),
"right": (yaw, pitch)} or a [2, 2] array-like with rows (left, right); "left" is the subject's left eye.

Adding a protocol is one new module with a `Sender` subclass, plus its line in SENDERS.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import socket
import time

import numpy as np

log = logging.getLogger(__name__)

# protocol name → "module:class"; imported on first use (the protocol modules import this one).
SENDERS = {
    "vmc": "app.vmc:VMCSender",
    "ifacialmocap": "app.ifacialmocap:IFacialMocapSender",
}


class Sender:
    """Base class of the live output protocols (see the module notes)."""

    PROTOCOL = "?"          # name used in messages
    DEFAULT_HOST = "127.0.0.1"
    DEFAULT_PORT = 0

    def send(self, H, expressions: dict[str, float], gaze=None, timestamp: float | None = None) -> bool:
        raise NotImplementedError

    def send_lost(self, timestamp: float | None = None) -> bool:
        raise NotImplementedError

    def calibrate(self, H) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class UDPSender(Sender):
    """A Sender whose frames are UDP datagrams to one address: subclasses turn a frame into datagrams."""

    RETRY_S = 2.0

    def __init__(self, host: str, port: int):
        self.address = (host, int(port))
        self._socket = None
        self._target = None
        self._warned = False
        self._retry_at = 0.0  # after a failure, wait before trying again (a bad host name costs a DNS lookup)

    def transmit(self, datagrams: list[bytes]) -> bool:
        """Send the datagrams in order; False (and one log line, ever) if the network refused them."""
        if not datagrams or time.monotonic() < self._retry_at:
            return False
        try:
            if self._socket is None:
                family, _, _, _, target = socket.getaddrinfo(*self.address, type=socket.SOCK_DGRAM)[0]
                self._socket, self._target = socket.socket(family, socket.SOCK_DGRAM), target
            for datagram in datagrams:
                self._socket.sendto(datagram, self._target)
            return True
        except OSError as e:  # unknown host, unreachable, full buffer: keep tracking, say it once
            if not self._warned:
                log.warning("%s: cannot send to %s:%d (%s); further errors are silent", self.PROTOCOL, *self.address, e)
                self._warned = True
            self._retry_at = time.monotonic() + self.RETRY_S
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class HeadOffset:
    """Head translation from a neutral pose, in metres in our camera frame (x = the subject's left, y down, z away
    from the camera); the first pose seen is the neutral one unless `calibrate(H)` chose another.

    Weak perspective gives the head's depth up to the unknown focal length, so with f in pixels per cm the head
    sits at depth d = d0 · f0 / f, where d0 (`neutral_distance_m`) is the assumed distance at calibration;
    sideways offsets are (t − t0) / f cm at that depth. H's t must be in a fixed image frame (full frame, not a
    moving crop) for the offset to mean head motion.
    """

    def __init__(self, neutral_distance_m: float = 0.6):
        self.d0 = neutral_distance_m
        self.neutral = None

    def calibrate(self, H) -> None:
        self.neutral = np.asarray(H, dtype=np.float64).copy()

    def offset(self, H) -> np.ndarray:
        H = np.asarray(H, dtype=np.float64)
        if self.neutral is None:
            self.calibrate(H)
        f0, f = self.neutral[0], H[0]
        x_cm, y_cm = (H[4:6] - self.neutral[4:6]) / f          # sideways, at the head's current depth
        dz_m = self.d0 * (f0 / f - 1.0)                        # smaller f: further away (+z)
        return np.array([x_cm / 100.0, y_cm / 100.0, dz_m])


def gaze_pair(gaze) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Normalise a gaze argument (see the module notes) to ((yaw, pitch) left, (yaw, pitch) right), or None."""
    if gaze is None:
        return None
    if isinstance(gaze, dict):
        rows = [gaze["left"], gaze["right"]]
    else:
        rows = list(gaze)
    g = np.asarray(rows, dtype=np.float64).reshape(2, 2)
    if not np.isfinite(g).all():
        return None
    return (float(g[0, 0]), float(g[0, 1])), (float(g[1, 0]), float(g[1, 1]))


# ---------------------------------------------------------------- opening one from a spec string
def sender_class(protocol: str) -> type[Sender]:
    from engine.errors import UserError

    if protocol not in SENDERS:
        raise UserError(f"unknown stream protocol '{protocol}' (choose {', '.join(SENDERS)})")
    module, name = SENDERS[protocol].split(":")
    return getattr(importlib.import_module(module), name)


def parse_spec(spec: str) -> tuple[str, str, int]:
    """'vmc', 'vmc:HOST', 'vmc:HOST:PORT' (an IPv6 host in brackets: 'vmc:[::1]:39539') → (protocol, host, port),
    with the protocol's default host and port where left out. Bad input raises engine.errors.UserError."""
    from engine.errors import UserError

    protocol, _, rest = spec.strip().partition(":")
    cls = sender_class(protocol.lower())
    host, port_text = cls.DEFAULT_HOST, ""
    if rest.startswith("["):  # [IPv6]:port
        end = rest.find("]")
        if end < 0:
            raise UserError(f"stream target '{spec}': missing ']' after the IPv6 address")
        host, tail = rest[1:end], rest[end + 1:]
        if tail and not tail.startswith(":"):
            raise UserError(f"stream target '{spec}': expected ':PORT' after ']'")
        port_text = tail[1:]
    elif rest:
        host, _, port_text = rest.partition(":")
    if not host:
        raise UserError(f"stream target '{spec}': empty host")
    port = cls.DEFAULT_PORT
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            raise UserError(f"stream target '{spec}': port '{port_text}' is not a number") from None
        if not 1 <= port <= 65535:
            raise UserError(f"stream target '{spec}': port {port} is out of range 1..65535")
    return protocol.lower(), host, port


def open_sender(spec: str, **options) -> Sender:
    """The sender for a spec (see `parse_spec`); options the protocol's constructor does not take are ignored
    (so `expressions="vrm"` can always be passed)."""
    protocol, host, port = parse_spec(spec)
    cls = sender_class(protocol)
    accepted = inspect.signature(cls.__init__).parameters
    return cls(host, port, **{k: v for k, v in options.items() if k in accepted})
