"""``peer(name)``: import a peer library or skip the calling test module (see conftest.py)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def peer(name: str) -> ModuleType:
    """Import ``name`` or skip the calling module: ``pytest.importorskip`` that also catches the
    ``RuntimeError``/``OSError`` a torchvision built for another torch raises at import."""
    try:
        return importlib.import_module(name)
    except (ImportError, RuntimeError, OSError) as exc:
        msg = f"peer {name!r} not importable ({type(exc).__name__}: {exc}); run `make test-peers`"
        pytest.skip(msg, allow_module_level=True)
        raise  # unreachable: pytest.skip raises
