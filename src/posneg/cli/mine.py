"""`posneg mine`: the typer command (flag parsing only); the work is in :mod:`posneg.mining`."""

from __future__ import annotations

from posneg.mining.cli import mine_cmd

__all__ = ["mine_cmd"]
