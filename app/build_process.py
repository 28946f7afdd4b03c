"""`facetrack build` as a child process, watched (torch-free): progress, ETA, cancel, cleanup.

The build trains for minutes and imports torch, so it runs in a process of its own, in its own process group:
the studio and `facetrack make-model` stay responsive and torch-free, and a cancel stops the whole group
(grandchildren too). Its `[k/n] stage …` lines and engine.progress's `##progress` lines become one fraction,
weighted by measured stage times, and an ETA. A failed or cancelled build removes the folders it created, and an
interpreter that exits with a build still running cancels it first.
"""
from __future__ import annotations

import atexit
import collections
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

from engine import options, progress
from engine.errors import UserError

# Seconds per stage of a 30 s + 30 s build on a 2-core CPU (docs/BENCHMARKS.md, Obama pair): I2ZNet dominates.
STAGE_WEIGHTS = {"enroll": 55.0, "train-dam": 93.0, "train-i2z": 468.0, "adapt": 90.0, "export": 6.0}
STAGE_TEXT = {"enroll": "reading your face", "train-dam": "learning your face's shape and texture",
              "train-i2z": "training your tracker", "adapt": "adapting to your usual place",
              "export": "packaging your model"}
# engine.progress stage names → (build stage, span of that stage they cover): the I2ZNet pool was ~6 % of its
# stage, the adaptation's teacher pass ~45 % of adaptation (build reports)
SUBSTAGES = {"enroll": ("enroll", 0.0, 0.97), "train-dam": ("train-dam", 0.0, 0.97),
             "train-i2z: pool": ("train-i2z", 0.0, 0.06), "train-i2z": ("train-i2z", 0.06, 0.97),
             "adapt: teacher": ("adapt", 0.0, 0.45), "adapt": ("adapt", 0.45, 0.97)}
SUBSTAGE_TEXT = {"enroll": "frame", "train-dam": "step", "train-i2z: pool": "preparing views", "train-i2z": "step",
                 "adapt: teacher": "frame", "adapt": "step"}
STAGE_LINE = re.compile(r"^\[(\d+)/(\d+)\] ([\w-]+) (…|done)")
ROOT = Path(__file__).resolve().parents[1]

_running: "weakref.WeakSet[BuildProcess]" = weakref.WeakSet()


def has_files(path: Path) -> bool:
    """A file, or a folder with something in it: a folder that is not ours (make_model.claim, BuildProcess's
    cleanup). One that cannot be read counts as full, so it is never claimed or removed."""
    try:
        return path.exists() and (not path.is_dir() or any(path.iterdir()))
    except OSError:
        return True


def build_command(enroll: Path, perform: Path, out: Path, profile: str, work: Path, extra=()) -> list[str]:
    return [sys.executable, "-m", "engine.cli", "build", str(enroll), str(perform), "--out", str(out),
            "--profile", profile, "--work", str(work), *map(str, extra)]


class BuildProcess:
    """`facetrack build` in its own process group, watched by a thread: `fraction` (0..1, stage weights from
    measured build times), `stage` (words), `detail` (step k/n), `eta_s`, `state` (idle, running, done, failed,
    cancelled), `error` (the child's `error:` line on failure). A failed or cancelled build removes the package
    and work folders if this build created them (a folder that held files before is never touched). `nice`
    lowers the build's CPU priority (the studio passes 10: live tracking comes first)."""

    def __init__(self, enroll: str | Path, perform: str | Path, out: str | Path, profile: str = "tiny",
                 work: str | Path | None = None, extra=(), command: list[str] | None = None, clock=time.monotonic,
                 nice: int = 0):
        self.out, self.nice = Path(out), nice
        self.work = Path(work) if work is not None else self.out.with_name(self.out.name + ".work")
        self.command = command or build_command(Path(enroll), Path(perform), self.out, profile, self.work, extra)
        self.state, self.stage, self.detail, self.error = "idle", "", "", None
        self.fraction, self.returncode = 0.0, None
        self.lines: collections.deque[str] = collections.deque(maxlen=200)   # the child's output (no progress)
        self._clock, self._started = clock, None
        self._done_weight, self._stage_key, self._within = 0.0, None, 0.0
        self._proc, self._reader, self._owned = None, None, []
        self._cancelling, self._cancelled = False, threading.Event()
        self._lock = threading.Lock()

    # -- life -----------------------------------------------------------------------------------------------
    def start(self) -> "BuildProcess":
        self._owned = [p for p in (self.out, self.work) if not has_files(p)]
        env = dict(os.environ, FACETRACK_PROGRESS="1", PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
        try:
            self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, env=env, start_new_session=True, text=True,
                                          encoding="utf-8", errors="replace", bufsize=1)
        except OSError as err:
            raise UserError(f"cannot start the build: {options.describe_os_error(err)}") from None
        if self.nice and hasattr(os, "setpriority"):
            try:   # a build beside the live studio yields the CPU to tracking; threads it starts later inherit it
                os.setpriority(os.PRIO_PROCESS, self._proc.pid, self.nice)
            except OSError:
                pass
        self.state, self._started = "running", self._clock()
        _running.add(self)
        self._reader = threading.Thread(target=self._read, name="build-watch", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            self._parse(line.rstrip("\n"))
        self._proc.stdout.close()
        rc = self._proc.wait()
        with self._lock:
            self.returncode = rc
            if self._cancelling:
                return                         # cancel() finishes the job
        if rc == 0 and (self.out / "manifest.json").is_file():
            self.fraction, self.state = 1.0, "done"
        else:
            self.error = self._error_line(rc)
            self._remove_owned()
            self.state = "failed"
        _running.discard(self)

    def _error_line(self, rc: int) -> str:
        errors = [ln[len("error: "):] for ln in self.lines if ln.startswith("error: ")]
        if errors:
            return errors[-1]
        if rc == 0:
            return f"the build finished without a package in {self.out}"
        if rc < 0:
            return f"the build was stopped by {_signal_name(-rc)}"
        last = next((ln.strip() for ln in reversed(self.lines) if ln.strip()), "")
        return f"the build failed (exit status {rc})" + (f": {last}" if last else "")

    def wait(self, timeout: float | None = None) -> str:
        if self._reader is not None:
            self._reader.join(timeout)
        return self.state

    def cancel(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace_s`; then the partial outputs are removed."""
        with self._lock:
            if self._proc is None or self.state != "running":
                return
            second = self._cancelling          # another thread is at it (closing while Cancel runs): wait
            if not second and self.returncode is not None:
                return                         # it ended on its own: the reader settles the state
            self._cancelling = True
        if second:
            self._cancelled.wait(grace_s + 10.0)
            return
        self._signal(signal.SIGTERM)
        try:
            self._proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._proc.wait()
        self._signal(signal.SIGKILL)          # anything of the group still there (a grandchild that lingered)
        self._reader.join(5.0)
        self._remove_owned()
        self.state, self.error = "cancelled", None
        _running.discard(self)
        self._cancelled.set()

    def _signal(self, sig) -> None:
        try:
            os.killpg(self._proc.pid, sig)     # start_new_session: the group id is the child's pid
        except (ProcessLookupError, PermissionError):
            pass

    def _remove_owned(self) -> None:
        for path in self._owned:
            shutil.rmtree(path, ignore_errors=True)

    # -- progress ---------------------------------------------------------------------------------------------
    def _parse(self, line: str) -> None:
        if (step := progress.parse(line)) is not None:
            self._progress(*step)
            return
        self.lines.append(line)
        if m := STAGE_LINE.match(line):
            name, finished = m.group(3), m.group(4) == "done"
            if name not in STAGE_WEIGHTS:
                return
            with self._lock:
                if finished:
                    self._stage_key, self._within = None, 0.0
                    self._done_weight = sum(STAGE_WEIGHTS[s] for s in _stages_through(name))
                else:
                    self._stage_key, self._within = name, 0.0
                    self._done_weight = sum(STAGE_WEIGHTS[s] for s in _stages_through(name)[:-1])
                    self.stage, self.detail = f"{m.group(1)}/{m.group(2)} {STAGE_TEXT[name]}", ""
                self._update()

    def _progress(self, name: str, done: int, total: int) -> None:
        if name not in SUBSTAGES or total <= 0:
            return
        stage, lo, hi = SUBSTAGES[name]
        with self._lock:
            if stage != self._stage_key:
                return
            self._within = max(self._within, lo + (hi - lo) * min(1.0, done / total))   # a pool rebuilt late
            self.detail = f"{SUBSTAGE_TEXT[name]} {done}/{total}"                       # never moves it back
            self._update()

    def _update(self) -> None:
        weight = STAGE_WEIGHTS.get(self._stage_key, 0.0) * self._within
        self.fraction = min(1.0, (self._done_weight + weight) / sum(STAGE_WEIGHTS.values()))

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._started is None else self._clock() - self._started

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None until there is a rate to speak of)."""
        f, elapsed = self.fraction, self.elapsed_s
        if self.state != "running" or f < 0.01 or elapsed < 3.0:
            return None
        return elapsed * (1.0 - f) / f


def _stages_through(name: str) -> list[str]:
    names = list(STAGE_WEIGHTS)
    return names[: names.index(name) + 1]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@atexit.register
def _stop_orphans() -> None:
    """An interpreter that exits with a build still running takes it along (never an orphan training for minutes)."""
    for build in list(_running):
        build.cancel(grace_s=3.0)


def describe_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left…"
    if seconds < 60:
        return "less than a minute left"
    return f"about {math.ceil(seconds / 60)} min left"

