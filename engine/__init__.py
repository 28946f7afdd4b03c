"""Offline engine: teacher, topology, pose, unwrapping, rendering, synthetic performer, enrollment.

Modules that the live app may use (topology, render, pose's numpy path) must not import torch at module level.
Progress bars show on terminals only (tqdm disable=None), so a failing command's stderr is its one `error:` line.
"""
import os

# OpenCV's FFmpeg backend prints demuxer complaints ("moov atom not found") for a corrupt file on its own;
# we report those files with one clear line instead.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# numpy's OpenBLAS on one thread (read once, when numpy loads): the live path's matrices are tiny, and OpenBLAS's
# spinning workers only fight the tracker, capture, UI and GL threads for the cores. Seen: the studio's track
# thread stalled for seconds in a 468-vertex matmul while Mesa's software GL drew the window (tests/test_studio.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
