"""Simulated bedside monitors, a load generator and a replay publisher for streamproc.

Shares only the wire models and codec with ``streamproc``; never imports the evaluator.
"""

__all__: list[str] = []
