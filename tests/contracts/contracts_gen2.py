"""Contract entries of ANT's uncertainty weighting and augmented conditioning (issue 17, gen2).

``ANTUncertaintyWeighting`` is a loss over per-sample diffusion losses ordered interval by
interval (B = 4, k = 2); it owns the learnable log-variances (init 0) and follows the loss's
dtype. ``AugmentedConditioning`` draws a same-class partner, a mode, lambdas and a dropout mask
from the generator and is linear in the conditioning, so gradcheck applies with the draws fixed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from contract_kit import Contract, Inputs, call_module, cls, randn, seeded


def _make_uw(dtype: torch.dtype, device: torch.device) -> nn.Module:
    module: nn.Module = seeded(lambda: cls("ANTUncertaintyWeighting")(num_intervals=2))
    return module.to(device)


def _losses(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, 4, dtype=dtype, device=device).abs() + 0.1,)


def _make_augcond(dtype: torch.dtype, device: torch.device) -> nn.Module:
    module: nn.Module = cls("AugmentedConditioning")(modes=("mixup", "dropout"), p_drop=0.2)
    return module.to(device)


def _conditioning(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    labels = torch.tensor([0, 1, 0, 1], device=device)
    return (randn(g, 4, 3, dtype=dtype, device=device), labels)


def _call_drawing(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


CONTRACTS: dict[str, Contract] = {
    "ANTUncertaintyWeighting": Contract(
        make=_make_uw,
        inputs=_losses,
        call=call_module,
        repr_has=("num_intervals=2",),
        grad_args=(0,),
        half_dtype=None,  # the weighted loss follows the per-sample losses' dtype
    ),
    "AugmentedConditioning": Contract(
        make=_make_augcond,
        inputs=_conditioning,
        call=_call_drawing,
        repr_has=("modes=('mixup', 'dropout')", "p_drop=0.2"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,  # the conditioning keeps its dtype
    ),
}
