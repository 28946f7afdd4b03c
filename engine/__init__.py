"""Offline engine: teacher, topology, pose, unwrapping, rendering, synthetic performer, enrollment.

Modules that the live app may use (topology, render, pose's numpy path) must not import torch at module level.
"""
