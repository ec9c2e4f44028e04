"""Test-suite set-up: this folder on ``sys.path`` so that test files in sub-folders can import
the shared helpers in ``tests/cli_helpers.py``."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
