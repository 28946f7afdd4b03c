"""Command-line option checking, in one place: every numeric option is range-checked before any work starts,
and a bad one is one `error:` line with exit status 2 (argparse's own usage dump is not an error message).

Each checker is an argparse `type=`: `count(lo, hi)`, `threads`, `fraction`, `positive`, `port`. Thread counts are
capped at the machine's cores: more threads than cores only thrash, and 100000 of them starved the machine.
"""
from __future__ import annotations

import argparse
import math
import os
import sys


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `error: <prog>: <message>` and exit status 2."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def count(lo: int = 1, hi: int = 10_000_000):
    """An integer in [lo, hi]."""
    def check(text: str) -> int:
        value = _number(text, int)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside {lo}..{hi}")
        return value
    check.__name__ = "integer"
    return check


def threads(text: str) -> int:
    """CPU threads: 0 (the library's own choice) up to the number of cores."""
    cores = os.cpu_count() or 1
    value = _number(text, int)
    if not 0 <= value <= cores:
        raise argparse.ArgumentTypeError(f"{value} threads: choose 0 (automatic) to {cores} (this machine's cores)")
    return value


def fraction(text: str) -> float:
    """A fraction of a video in [0, 1]."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction in [0, 1]")
    return value


def positive(hi: float = 1e6):
    """A finite number in (0, hi]."""
    def check(text: str) -> float:
        value = _number(text, float)
        if not 0.0 < value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside (0, {hi:g}]")
        return value
    check.__name__ = "number"
    return check


def port(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1..65535")
    return value
