"""A session recorder in a child process, writing paced 30 fps frames until it is killed (the kill -9 tests)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Moving noise (so the encoder has real work), z filled with the frame number, one stdout line per written frame.
SCRIPT = """
import sys, time, numpy as np
sys.path.insert(0, {root!r})
from app.recording import SessionRecorder
rec = SessionRecorder({folder!r}, 30.0, ({w}, {h}))
rng = np.random.default_rng(0)
base = rng.integers(0, 255, ({h}, {w}, 3), dtype=np.uint8)
t0 = time.monotonic()
for i in range(100000):
    rec.write(np.roll(base, 3 * i, axis=1), time.monotonic(), np.full({z}, i, np.float32), np.arange(6.0), {{}})
    print(i + 1, flush=True)
    time.sleep(max(0.0, t0 + (i + 1) / 30 - time.monotonic()))
"""


def start(folder, size: tuple[int, int], z_dim: int) -> subprocess.Popen:
    code = SCRIPT.format(root=str(ROOT), folder=str(folder), w=size[0], h=size[1], z=z_dim)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def wait_written(child: subprocess.Popen, frames: int) -> int:
    """Read the child's count until it has written `frames` (or stopped); the last count read."""
    written = 0
    for line in child.stdout:
        written = int(line)
        if written >= frames:
            break
    return written
