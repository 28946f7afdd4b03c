"""Machine-readable progress for a parent process (app.build_process.BuildProcess): `report(stage, done, total)`.

With FACETRACK_PROGRESS=1 in the environment each call may print one line on stderr,

    ##progress DONE/TOTAL STAGE

at most every INTERVAL_S per stage, plus the first and the last step, so a training loop can call it every step
for free. Without the variable it prints nothing: a terminal keeps its tqdm bars and nothing else.
"""
from __future__ import annotations

import os
import re
import sys
import time

ENV = "FACETRACK_PROGRESS"
PREFIX = "##progress"
LINE = re.compile(r"^##progress (\d+)/(\d+) (.+)$")
INTERVAL_S = 0.5

_last: dict[str, float] = {}


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def report(stage: str, done: int, total: int) -> None:
    """Step `done` of `total` in `stage` (a short name; spaces allowed)."""
    if not enabled():
        return
    now = time.monotonic()
    if 1 < done < total and now - _last.get(stage, -INTERVAL_S) < INTERVAL_S:
        return
    _last[stage] = now
    try:
        print(f"{PREFIX} {int(done)}/{int(total)} {stage}", file=sys.stderr, flush=True)
    except (OSError, ValueError):      # the parent went away or closed the pipe: progress is not worth a failure
        pass


def parse(line: str) -> tuple[str, int, int] | None:
    """(stage, done, total) of a progress line, None for any other line."""
    m = LINE.match(line.rstrip("\n"))
    return None if m is None else (m.group(3), int(m.group(1)), int(m.group(2)))
