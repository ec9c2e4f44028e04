"""The pieces every contract entry is built from (``Contract`` and small factories).

``tests/test_contracts.py`` runs the shared contracts over every registered unit. Its table is
``CONTRACTS`` there plus the ``CONTRACTS`` dict of every ``tests/contracts/contracts_*.py`` file,
so a new family adds its entries in a file of its own. Importable from every test folder because
``tests/conftest.py`` puts this folder on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from posneg import registry

Inputs = tuple[Any, ...]


@dataclass(frozen=True)
class Contract:
    """How the shared suite builds and runs one unit.

    Attributes:
        make: ``make(dtype, device) -> unit``: the unit with non-default hyperparameters; units
            with parameters are initialised from a fixed seed (without touching the global RNG),
            so two calls build identical units. ``dtype`` is the dtype of the inputs the unit
            will see (stateful storage such as a queue is created in it).
        inputs: ``inputs(dtype, device, g) -> tuple``: small inputs drawn from the local
            generator ``g``; floating tensors in ``dtype`` on ``device``.
        call: ``call(unit, inputs, generator) -> output``: runs the unit. ``generator`` is None
            for units that do not draw.
        repr_has: substrings ``repr(unit)`` must contain (the hyperparameters ``make`` set).
        draws: whether the unit draws random numbers (then ``call`` passes ``generator``).
        grad_args: positions in ``inputs`` that ``gradcheck`` differentiates.
        half_dtype: the dtype of floating outputs for float16/bfloat16 inputs; None: the
            input's dtype.
        not_applicable: check name -> why it does not apply to this unit.
        grad_make: the unit ``gradcheck`` uses when it must differ from ``make`` (say why
            where the entry is defined); ``None``: ``make``.
        grad_call: the call ``gradcheck`` repeats when it must differ from ``call`` (for
            example, fit once and differentiate only the fitted map); ``None``: ``call``.
    """

    make: Callable[[torch.dtype, torch.device], Any]
    inputs: Callable[[torch.dtype, torch.device, torch.Generator], Inputs]
    call: Callable[[Any, Inputs, torch.Generator | None], Any]
    repr_has: tuple[str, ...]
    draws: bool = False
    grad_args: tuple[int, ...] = ()
    half_dtype: torch.dtype | None = torch.float32
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    grad_make: Callable[[torch.dtype, torch.device], Any] | None = None
    grad_call: Callable[[Any, Inputs, torch.Generator | None], Any] | None = None


B, D = 4, 3


def randn(
    g: torch.Generator, *shape: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Standard normal draws from the local generator (on CPU), cast and moved."""
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def seeded(build: Callable[[], Any]) -> Any:
    """Run ``build`` with the global RNG seeded to 0 and restored afterwards (parameter init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def pair(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, B, D, dtype=dtype, device=device),
    )


def call_module(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs)


def cls(name: str) -> Any:
    """The registered class ``name`` (imported only when a check runs)."""
    return next(t for t in registry.TECHNIQUES if t.name == name).load()


def loss(name: str, *args: Any, **hyper: Any) -> Callable[[torch.dtype, torch.device], nn.Module]:
    """``make`` for a stateless module built with ``args`` and ``hyper`` (its dtype follows the
    inputs): losses, mixing and augmentation modules."""

    def make(dtype: torch.dtype, device: torch.device) -> nn.Module:
        module: nn.Module = seeded(lambda: cls(name)(*args, **hyper))
        return module.to(device)

    return make


def views(n_views: int) -> Callable[[torch.dtype, torch.device, torch.Generator], Inputs]:
    def inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
        return (randn(g, n_views, B, D, dtype=dtype, device=device),)

    return inputs
