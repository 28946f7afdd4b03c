"""Signals that ask a headless run to stop at a safe point instead of killing it (torch-free).

`with StopSignals() as stop:` SIGINT, SIGTERM and SIGHUP set `stop.requested` (the signal's name); the run checks it
at its own boundaries (`track`: between frames, so a video frame and its session line go together; `make-model`:
between polls, so it can stop the build's process group and remove partial outputs first). The previous handlers
come back at exit. Off the main thread Python cannot install handlers: nothing changes there.
"""
from __future__ import annotations

import signal
import threading


class StopSignals:
    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __enter__(self):
        self._old, self.requested = {}, None
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, _frame) -> None:
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
