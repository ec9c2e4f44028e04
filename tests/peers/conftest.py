"""Peer-parity tests (``make test-peers``): posneg against torchvision, timm, lightly, kornia.

These tests need the peer libraries of ``tests/peers/requirements.txt`` in a venv whose torch
matches torchvision (``.venv-peers``; docs/peers.md). In any other environment every module here
skips itself through ``_peer.peer``: a peer that is missing raises ``ImportError``, and a
torchvision wheel built for another torch raises ``RuntimeError`` (``operator torchvision::nms
does not exist``) or ``OSError`` (a missing shared library) at import, which skip too, so
``make test`` stays green without them.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator for the inputs (never the global RNG)."""
    return torch.Generator().manual_seed(0)
