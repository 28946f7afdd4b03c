"""`facetrack studio`: the live desktop app (see app.main_window). Entry point: main(argv).

    --package P          package folder, "generic" (the embedded any-face package) or "demo" (a model-free
                         stand-in tracker, for UI work). Default: the performer's own package remembered from the
                         last launch (app.settings), else "generic", so the first launch tracks the face in front
                         of the camera; "Make my model…" then builds a personal one. A performer package given
                         here becomes the remembered one (the embedded sample stranger of `facetrack demo` never)
    --source S           camera:N | a video file | synthetic   (default: camera:0)
    --stream             start streaming VMC at once (--host/--port, default 127.0.0.1:39539)
    --record DIR         start recording a session folder under DIR at once
    --screenshot PNG --frames N   run N frames, save the window to PNG and quit (tests, docs)

Ctrl-C, SIGTERM and SIGHUP close the window as its close button does: recording stops and the session is closed
(`closed: true`), then the app exits 0; a second signal while closing ends it at once. Python runs signal
handlers only between its own bytecodes, never while Qt's event loop waits in C++, so the C-level handler also
writes to a socket (signal.set_wakeup_fd) that a QSocketNotifier watches: Qt wakes, calls into Python, and the
handler runs at once. With no display (Linux: DISPLAY, WAYLAND_DISPLAY and QT_QPA_PLATFORM all unset) it is one
`error:` line and exit 2, not Qt's abort.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

from app import settings
from app.vmc import DEFAULT_HOST, DEFAULT_PORT
from engine import options
from engine.errors import UserError
from export.package import (
    GENERIC,
    MANIFEST,
    SAMPLE_PACKAGE,
    check_manifest,
    parse_manifest,
    read_manifest,
)

DEMO = "demo"      # the --package name of app.demo_tracker (and GENERIC, export.package: no folders)

# The `synthetic` source plays the package's `synthetic.mp4` (the sample package ships one); this is the
# fallback when neither has it.
SYNTHETIC_CLIP: str | None = None


def synthetic_clip(package: str | None) -> str | None:
    """The package's own synthetic clip, else the sample package's."""
    for folder in (package, SAMPLE_PACKAGE):
        if folder and (Path(folder) / "synthetic.mp4").is_file():
            return str(Path(folder) / "synthetic.mp4")
    return SYNTHETIC_CLIP
SCREENSHOT_TIMEOUT_S = 120  # --screenshot gives up waiting for frames after this and saves what it has


def startup_package(explicit: str | None = None) -> str:
    """The package the studio opens: --package when given; else the remembered one (app.settings.last_package)
    while its manifest still checks (hashes are checked when it opens); else the generic package."""
    if explicit:
        return explicit
    last = settings.last_package()
    if last is not None:
        try:
            check_manifest(last / MANIFEST, parse_manifest(last / MANIFEST, read_manifest(last)))
            return str(last)
        except UserError:
            pass
    return GENERIC


def remember_opened(path: str, tracker) -> bool:
    """Open `path` at the next launch when it is the performer's own package (a performer package, not the
    embedded sample stranger, the generic package or the demo tracker). What the package picker should call after
    a package opens. Returns whether it was remembered."""
    package = getattr(tracker, "package", None)
    if path in (GENERIC, DEMO) or package is None or package.kind != "performer":
        return False
    if Path(package.path).resolve() == SAMPLE_PACKAGE.resolve():
        return False
    settings.remember_package(package.path)
    return True


def package_line(path: str, tracker, remembered: bool = False) -> tuple[str, str]:
    """(label for the controls, status-bar line) saying which package is open."""
    package = getattr(tracker, "package", None)
    if path == DEMO or package is None:
        return path, f"package: {path} (a model-free stand-in tracker)"
    if package.kind == "generic":
        return "generic (any face)", "package: generic (any face, no texture): “Make my model…” builds your own"
    if Path(package.path).resolve() == SAMPLE_PACKAGE.resolve():
        return path, f"package: {path} (the sample performer, a synthetic stranger)"
    return path, f"package: {path}" + (" (your model, remembered from the last session)" if remembered else "")


def parse_args(argv):
    p = options.Parser(prog="facetrack studio", description="Live face-performance tracking studio")
    p.add_argument("--package", default=None,
                   help="package folder, 'generic' (any face) or 'demo' (a model-free stand-in); default: your "
                        "package remembered from the last launch, else 'generic'")
    p.add_argument("--source", default="camera:0", help="camera:N | video file | synthetic")
    p.add_argument("--synthetic-clip", default=None, help=argparse.SUPPRESS)
    p.add_argument("--stream", action="store_true", help="stream VMC from the start")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=options.port, default=DEFAULT_PORT)
    p.add_argument("--record", metavar="DIR", help="record a session under DIR from the start")
    p.add_argument("--screenshot", metavar="PNG", help="save the window after --frames frames, then quit")
    p.add_argument("--frames", type=options.count(1, 1_000_000), default=60)
    return p.parse_args(argv)


def no_display() -> str | None:
    """Why Qt could not open a window here (it would abort the process), or None."""
    if not sys.platform.startswith("linux") and not sys.platform.startswith("freebsd"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    x11, wayland = bool(os.environ.get("DISPLAY")), bool(os.environ.get("WAYLAND_DISPLAY"))
    if platform == "xcb":
        missing = None if x11 else "DISPLAY is"
    elif platform.startswith("wayland"):
        missing = None if wayland else "WAYLAND_DISPLAY is"
    elif platform:                               # offscreen, minimal, eglfs, vnc...: no display server needed
        missing = None
    else:
        missing = None if x11 or wayland else "DISPLAY and WAYLAND_DISPLAY are"
    if missing is None:
        return None
    return (f"no display: {missing} unset (run it in a desktop session, under `xvfb-run -a`, or with "
            "QT_QPA_PLATFORM=offscreen)")


CLOSE_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class SignalCloser:
    """SIGINT/SIGTERM/SIGHUP → window.close() from inside Qt's event loop (see the module notes); `received`
    names the signal. The first signal closes cleanly; a second one while closing gets the default action.
    Restores the previous handlers and wakeup fd on `restore()`."""

    def __init__(self, window):
        from PySide6.QtCore import QSocketNotifier

        self.window, self.received = window, None
        self._old, self._old_fd = {}, None
        self._read, self._write = socket.socketpair()
        for end in (self._read, self._write):
            end.setblocking(False)
        self._notifier = QSocketNotifier(self._read.fileno(), QSocketNotifier.Type.Read)
        self._notifier.activated.connect(self._drain)   # entering Python here runs the pending handler
        self._old_fd = signal.set_wakeup_fd(self._write.fileno())
        for sig in CLOSE_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)

    def _drain(self, *_):
        try:
            while self._read.recv(64):
                pass
        except OSError:
            pass

    def _handle(self, signum, _frame):
        from PySide6.QtCore import QTimer

        if self.received is not None:               # closing already: a second signal ends it now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signal.Signals(signum).name
        print(f"studio: {self.received}: closing (recording stops, the session is saved)", flush=True)
        QTimer.singleShot(0, self.window.close)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}
        signal.set_wakeup_fd(self._old_fd if self._old_fd is not None else -1)
        self._notifier.setEnabled(False)
        self._read.close()
        self._write.close()


def _error(text: str) -> int:
    print(f"error: {text}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from engine.errors import UserError

    try:
        if args.record:
            options.writable_folder(args.record, "--record")
        if args.screenshot:
            options.writable_file(args.screenshot, "--screenshot")
    except UserError as err:
        return _error(str(err))
    if why := no_display():
        return _error(f"facetrack studio: {why}")
    from PySide6.QtWidgets import QApplication  # late: `--help` works without a display

    from app.main_window import MainWindow, open_package

    app = QApplication.instance() or QApplication([sys.argv[0]])
    path = startup_package(args.package)
    tracker, label, line = None, "", ""
    try:
        tracker = open_package(path, settings.saved_backend(path))     # as the window reopens it: no second open
    except Exception as e:  # noqa: BLE001 (show the window anyway; the package picker can fix it)
        line = f"cannot open {path}: {e}"
        if args.package is None and path != GENERIC:    # the remembered package broke: track any face meanwhile
            try:
                tracker, path = open_package(GENERIC), GENERIC
                line += "; opened the generic package instead"
            except Exception as e2:  # noqa: BLE001
                line += f"; cannot open the generic package either: {e2}"
    if tracker is not None:
        if args.package is not None:
            remember_opened(path, tracker)
        label, said = package_line(path, tracker, remembered=args.package is None and path != GENERIC)
        line = "; ".join(x for x in (line, said) if x)        # the window shows the backend's fallback line
    window = MainWindow(tracker=tracker, source=args.source, record_dir=args.record, package_label=label,
                        synthetic_clip=args.synthetic_clip or synthetic_clip(path))
    if line:
        window.say(line)
    window.controls.host_edit.setText(args.host)
    window.controls.port_spin.setValue(args.port)
    window.resize(1400, 900)
    window.show()
    if args.stream:
        window.set_streaming(True)
    if args.record:
        window.set_recording(True)
    status = {"code": 0}
    if args.screenshot:
        from PySide6.QtCore import QTimer

        def shoot(code=0):
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            window.grab().save(str(args.screenshot))
            status["code"] = code
            window.close()
            app.quit()

        window.after_frames(args.frames, lambda: QTimer.singleShot(300, shoot))  # let the plots/GL catch up
        QTimer.singleShot(SCREENSHOT_TIMEOUT_S * 1000, lambda: shoot(1))
    import threading

    closer = SignalCloser(window) if threading.current_thread() is threading.main_thread() else None
    try:
        app.exec()
    finally:
        if closer is not None:
            closer.restore()
    if closer is not None and closer.received:
        print(f"studio: {closer.received}: closed cleanly", flush=True)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
