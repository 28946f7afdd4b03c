"""`facetrack studio`: the live desktop app (see app.main_window). Entry point: main(argv).

    --package P          performer package folder ("demo": a model-free stand-in tracker, for UI work)
    --source S           camera:N | a video file | synthetic   (default: camera:0)
    --stream             start streaming VMC at once (--host/--port, default 127.0.0.1:39539)
    --record DIR         start recording a session folder under DIR at once
    --screenshot PNG --frames N   run N frames, save the window to PNG and quit (tests, docs)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.vmc import DEFAULT_HOST, DEFAULT_PORT
from engine import options
from export.package import SAMPLE_PACKAGE

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


def parse_args(argv):
    p = options.Parser(prog="facetrack studio", description="Live face-performance tracking studio")
    p.add_argument("--package", default=str(SAMPLE_PACKAGE) if SAMPLE_PACKAGE.is_dir() else None,
                   help="performer package folder (default: the sample package; 'demo': a model-free stand-in)")
    p.add_argument("--source", default="camera:0", help="camera:N | video file | synthetic")
    p.add_argument("--synthetic-clip", default=None, help=argparse.SUPPRESS)
    p.add_argument("--stream", action="store_true", help="stream VMC from the start")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=options.port, default=DEFAULT_PORT)
    p.add_argument("--record", metavar="DIR", help="record a session under DIR from the start")
    p.add_argument("--screenshot", metavar="PNG", help="save the window after --frames frames, then quit")
    p.add_argument("--frames", type=options.count(1, 1_000_000), default=60)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtWidgets import QApplication  # late: `--help` works without a display

    from app.main_window import MainWindow, open_package

    app = QApplication.instance() or QApplication([sys.argv[0]])
    tracker, label, error = None, "", None
    if args.package:
        try:
            tracker, label = open_package(args.package), args.package
        except Exception as e:  # show the window anyway; the package picker can fix it
            error = f"cannot open {args.package}: {e}"
    window = MainWindow(tracker=tracker, source=args.source, record_dir=args.record, package_label=label,
                        synthetic_clip=args.synthetic_clip or synthetic_clip(args.package))
    if error:
        window.say(error)
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
    app.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
