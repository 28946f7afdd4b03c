"""The studio's "Make my model" dialog: name → guided recording → build in the background → the new package.

The recording takes every frame of the window's current source through the pipeline's frame tap
(app.guided.TapRecorder), while the studio keeps tracking; the prompt, its countdown and a preview are shown
big. The build runs as `facetrack build` in its own process group (app.build_process.BuildProcess): a progress bar,
the stage, an ETA and Cancel. On success the window switches to the new package and it is remembered for the next
launch (app.settings). The dialog is not modal: the studio stays usable throughout. Closing it (or quitting the
studio) mid-way asks first, then cancels: no build process outlives it, and nothing half-made is left on disk.
"""
from __future__ import annotations

import getpass
import re
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFont, QImage, QPixmap
from PySide6.QtWidgets import (QApplication, QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QMessageBox, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from app.build_process import BuildProcess, describe_eta
from app.guided import GuidedRecording, TapRecorder
from app import make_model as mm
from app import settings
from engine.errors import UserError

TICK_MS = 100
PREVIEW_WIDTH = 240
BUILD_NICE = 10        # the build runs beside the live studio: tracking keeps the CPU it needs
INTRO = ("Your own model tracks you better than the generic one. Record about {total} s: first a few guided "
         "expressions, then you performing as you usually do. The model is then built on this computer "
         "(about 10 minutes on a small CPU); keep using the studio meanwhile.")


def _default_name() -> str:
    try:
        name = re.sub(r"[^\w.-]", "", getpass.getuser()).lstrip(".")
    except Exception:                       # no login name (containers): any plain name will do
        name = ""
    return name or "me"


class MakeModelDialog(QDialog):
    """`MakeModelDialog(window)`: window is the studio's MainWindow (its pipeline, load_package and say). The
    keyword arguments shorten the recording and replace the build command (tests, screenshots)."""

    def __init__(self, window, *, enroll_seconds: float = 30.0, perform_seconds: float = 30.0,
                 get_ready: float = 3.0, build_command=None, build_extra=(), root: Path | None = None):
        super().__init__(window)
        self.studio = window
        self.enroll_seconds, self.perform_seconds, self.get_ready = enroll_seconds, perform_seconds, get_ready
        self._build_command, self._build_extra = build_command, tuple(build_extra)
        self.root = Path(root) if root is not None else mm.data_dir()
        self.state = "setup"          # setup, recording, building, cancelling, done, failed, cancelled
        self.recorder: TapRecorder | None = None
        self.build: BuildProcess | None = None
        self.out: Path | None = None
        self.confirm = self._ask      # (question) -> bool; tests replace it
        self.setWindowTitle("Make my model")
        self.setModal(False)
        self._build_ui()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)      # runs while shown (showEvent, hideEvent)
        if (app := QApplication.instance()) is not None:
            app.aboutToQuit.connect(self._abandon)
        self._tick()

    # -- layout ----------------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        total = round(self.enroll_seconds + self.perform_seconds)
        intro = QLabel(INTRO.format(total=total))
        intro.setWordWrap(True)
        self.name_edit = QLineEdit(mm.free_name(_default_name(), self.root))
        self.name_edit.textChanged.connect(lambda _: self._tick())
        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.clicked.connect(self._pick_root)
        self.profile_combo = QComboBox()
        self.profile_combo.addItem("tiny: minutes on a CPU", "tiny")
        self.profile_combo.addItem("full: for a GPU", "full")
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        where = QWidget()
        row = QHBoxLayout(where)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.folder_label, 1)
        row.addWidget(self.folder_button)
        form.addRow("Saved as", where)
        form.addRow("Quality", self.profile_combo)
        form.addRow("Source", self.source_label)

        self.preview = QLabel()
        self.preview.setFixedSize(PREVIEW_WIDTH, PREVIEW_WIDTH * 3 // 4)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("background: #202020; color: #aaa;")
        self.preview.setText("preview")
        self.prompt_label = QLabel("Press Start when you are ready")
        self.prompt_label.setWordWrap(True)
        self.prompt_label.setFont(_font(20, bold=True))
        self.countdown_label = QLabel("")
        self.countdown_label.setFont(_font(40, bold=True))
        self.next_label = QLabel("")
        self.next_label.setStyleSheet("color: #777;")
        prompt_box = QVBoxLayout()
        prompt_box.addWidget(self.prompt_label, 1)
        prompt_box.addWidget(self.countdown_label)
        prompt_box.addWidget(self.next_label)
        stage = QHBoxLayout()
        stage.addWidget(self.preview)
        stage.addLayout(prompt_box, 1)
        self.record_bar = QProgressBar()
        self.record_bar.setFormat("recording %p%")
        self.record_bar.setValue(0)

        self.build_bar = QProgressBar()
        self.build_bar.setFormat("building %p%")
        self.build_bar.setValue(0)
        self.stage_label = QLabel("")
        self.eta_label = QLabel("")
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addLayout(stage)
        layout.addWidget(self.record_bar)
        layout.addWidget(self.stage_label)
        layout.addWidget(self.build_bar)
        layout.addWidget(self.eta_label)
        layout.addWidget(self.message_label)
        layout.addLayout(buttons)
        self.resize(640, 560)

    # -- actions -----------------------------------------------------------------------------------------------
    def _package(self) -> Path | None:
        try:
            return mm.performer_folder(self.name_edit.text(), self.root)
        except UserError:
            return None

    def _pick_root(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Keep performer models under", str(self.root))
        if folder:
            self.root = Path(folder)
            self._tick()

    def start(self) -> None:
        if self.state not in ("setup", "failed", "cancelled"):
            return
        source = self.studio.pipeline.source
        out = self._package()
        if source is None or out is None:
            self._tell("choose a source in the studio first" if source is None else "choose a plain name", True)
            return
        try:
            scratch = mm.claim(out)
            recording = GuidedRecording(scratch, getattr(source, "fps", 30.0) or 30.0, self.enroll_seconds,
                                        self.perform_seconds, self.get_ready)
        except UserError as err:
            self._tell(str(err), True)
            return
        self.out = out
        # a camera's frames carry its clock (prompts follow real time); a file's are counted at its fps
        self.recorder = TapRecorder(recording, use_time=getattr(source, "paced", True))
        self.studio.pipeline.add_tap(self.recorder)
        self._set_state("recording")
        self._tell("")
        self.studio.say("Make my model: recording")

    def cancel(self) -> None:
        if self.state == "recording":
            self._stop_recording()
            mm.release(self.out, keep_package=False)
            self._set_state("cancelled")
            self._tell("Cancelled: nothing was kept.")
        elif self.state == "building":
            self._set_state("cancelling")
            self._tell("Cancelling the build…")
            threading.Thread(target=self.build.cancel, name="build-cancel", daemon=True).start()

    def _stop_recording(self) -> None:
        if self.recorder is not None:
            self.studio.pipeline.remove_tap(self.recorder)
            self.recorder.cancel()

    def _start_build(self) -> None:
        self.studio.pipeline.remove_tap(self.recorder)
        clips, scratch = self.recorder.recording.paths, mm.scratch_folder(self.out)
        work = scratch / "build"
        command = None
        if self._build_command is not None:
            command = self._build_command(clips["enroll"], clips["perform"], self.out, work)
        self.build = BuildProcess(clips["enroll"], clips["perform"], self.out, self.profile_combo.currentData(),
                                  work, self._build_extra, command, nice=BUILD_NICE)
        try:
            self.build.start()
        except UserError as err:
            self._fail(str(err))
            return
        self._set_state("building")
        self.prompt_label.setText("Thank you! Your model is being built.")
        self.countdown_label.setText("")
        self.next_label.setText("You can keep using the studio meanwhile.")

    def _finish_build(self) -> None:
        state = self.build.state
        if state == "done":
            mm.release(self.out, keep_package=True)
            settings.remember_package(self.out)
            self.studio.load_package(str(self.out))
            self._set_state("done")
            self.build_bar.setValue(100)
            self.eta_label.setText("")
            self._tell(f"Your model is ready: {self.out}. The studio now tracks with it.")
            self.studio.say(f"Make my model: switched to {self.out}")
        elif state == "cancelled":
            mm.release(self.out, keep_package=False)
            self._set_state("cancelled")
            self._tell("Cancelled: nothing was kept.")
        else:
            self._fail(f"build: {self.build.error}")

    def _fail(self, line: str) -> None:
        if self.out is not None:
            mm.release(self.out, keep_package=False)
        self._set_state("failed")
        self._tell(line, error=True)
        self.studio.say(f"Make my model failed: {line}")

    def _tell(self, text: str, error: bool = False) -> None:
        self.message_label.setStyleSheet("color: #c0392b;" if error else "")
        self.message_label.setText(text)

    def _set_state(self, state: str) -> None:
        self.state = state
        editable = state in ("setup", "failed", "cancelled")
        for w in (self.name_edit, self.folder_button, self.profile_combo):
            w.setEnabled(editable)
        self.start_button.setEnabled(editable)
        self.start_button.setText("Start again" if state in ("failed", "cancelled") else "Start")
        self.cancel_button.setEnabled(state in ("recording", "building"))
        if state in ("failed", "cancelled"):
            self.countdown_label.setText("")
            self.prompt_label.setText("Press Start again when you are ready")

    # -- the timer ---------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.state in ("setup", "failed", "cancelled"):
            self._show_setup()
        elif self.state == "recording":
            self._show_recording()
        elif self.state in ("building", "cancelling"):
            self._show_build()

    def _show_setup(self) -> None:
        source, out = self.studio.pipeline.source, self._package()
        self.folder_label.setText(shown_path(out) if out else "a plain name, please (no slashes)")
        if source is None:
            self.source_label.setText("none: choose a camera in the studio first")
        elif getattr(source, "paced", True):
            self.source_label.setText(f"{source.name} (a camera: you will be recorded)")
        else:
            self.source_label.setText(f"{source.name}: a video FILE, not a camera. Its frames are recorded in "
                                      "place of you (for trying the flow); pick a camera to record yourself.")
        self.start_button.setEnabled(source is not None and out is not None)
        self._show_preview()

    def _show_recording(self) -> None:
        rec = self.recorder
        if rec.error is not None:
            self._stop_recording()
            self._fail(f"recording: {rec.error}")
            return
        status = rec.status()
        if status.state == "done":
            self.record_bar.setValue(100)
            self._start_build()
            return
        if status.state == "waiting":
            self.prompt_label.setText("Waiting for the first frame…")
        elif status.state == "saving":
            self.prompt_label.setText("Thank you! Saving the clips…")
            self.countdown_label.setText("")
            self.next_label.setText("next: the build")
        else:
            self.prompt_label.setText(status.prompt.text)
            self.countdown_label.setText(f"{int(np.ceil(status.prompt_left))}")
            i = rec.recording.step_at(status.elapsed)
            nxt = rec.recording.script[i + 1].text if i + 1 < len(rec.recording.script) else "then the build"
            self.next_label.setText(f"next: {nxt}")
        self.record_bar.setValue(round(100 * status.fraction))
        dropped = f" · {rec.dropped} frames skipped (busy)" if rec.dropped else ""
        self.stage_label.setText(f"enrollment {status.frames['enroll']} frames · new environment "
                                 f"{status.frames['perform']} frames{dropped}")
        last = self.studio.pipeline.track.last         # the studio's own tracker, when one is open: a cheap check
        no_face = self.studio.pipeline.tracker is not None and last is not None and not last.found
        self._tell("The studio sees no face right now: face the camera, in good light." if no_face else "",
                   error=no_face)
        self._show_preview()

    def _show_build(self) -> None:
        build = self.build
        if build.state != "running":
            self._finish_build()
            return
        self.build_bar.setValue(round(100 * build.fraction))
        if self.state == "building":
            self.stage_label.setText(f"{build.stage}{' · ' + build.detail if build.detail else ''}"
                                     if build.stage else "starting…")
            self.eta_label.setText(describe_eta(build.eta_s))

    def _show_preview(self) -> None:
        image = self.recorder.latest if self.recorder is not None and self.state == "recording" else None
        if image is None:
            return
        h, w = image.shape[:2]
        qimage = QImage(np.ascontiguousarray(image).data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self.preview.setPixmap(QPixmap.fromImage(qimage).scaled(
            self.preview.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))

    # -- closing -----------------------------------------------------------------------------------------------
    def _ask(self, question: str) -> bool:
        answer = QMessageBox.question(self, "Make my model", question,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _busy(self) -> bool:
        return self.state in ("recording", "building", "cancelling")

    def _may_close(self) -> bool:
        """Not busy, or the performer agreed to stop: then whatever runs is cancelled (no orphan process)."""
        if self._busy():
            what = "recording" if self.state == "recording" else "build"
            if not self.confirm(f"Stop making your model? The {what} is cancelled and nothing is kept."):
                return False
            self._abandon()
        return True

    def closeEvent(self, event) -> None:
        if not self._may_close():
            event.ignore()
            return
        super().closeEvent(event)        # QDialog's: reject(), below, which hides it

    def reject(self) -> None:           # Esc, or closing the window
        if self._may_close():
            super().reject()

    def showEvent(self, event) -> None:
        self._timer.start(TICK_MS)
        super().showEvent(event)

    def hideEvent(self, event) -> None:
        self._timer.stop()
        if self.recorder is not None and not self._busy():
            self.recorder.latest = None            # the window keeps a closed dialog; not its last frame
        super().hideEvent(event)

    def _abandon(self) -> None:
        """Cancel whatever runs, now (closing, quitting): no orphan process, nothing half-made on disk."""
        if self.state == "recording":
            self._stop_recording()
        elif self.state in ("building", "cancelling") and self.build is not None:
            self.build.cancel(grace_s=5.0)
            self.build.wait(10.0)
        if self._busy() and self.out is not None:
            mm.release(self.out, keep_package=False)
            self.state = "cancelled"


def shown_path(path: Path) -> str:
    """`path` with the home folder as ~ (shorter, and the same on every machine)."""
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def _font(points: int, bold: bool = False) -> QFont:
    font = QFont()
    font.setPointSize(points)
    font.setBold(bold)
    return font
