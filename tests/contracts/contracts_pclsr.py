"""Contract entries for PCL-SR (``posneg.losses.pcl_sr``): the G-side loss, the D-side dual
contrastive loss and the positives/hard-negatives sampler."""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import Contract, Inputs, call_module, loss

_H = 8  # image side (even: the Haar transform halves it)


def _rand(g: torch.Generator, *shape: int, dtype: torch.dtype, device: torch.device) -> Any:
    return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def _loss_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """sr (2, 3, 8, 8), positives (2, 2, 3, 8, 8), negatives (3, 2, 3, 8, 8)."""
    return (
        _rand(g, 2, 3, _H, _H, dtype=dtype, device=device),
        _rand(g, 2, 2, 3, _H, _H, dtype=dtype, device=device),
        _rand(g, 3, 2, 3, _H, _H, dtype=dtype, device=device),
    )


def _loss_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    from posneg.losses.pcl_sr import haar_highpass  # a parameter-free embedding

    return unit(*inputs, embed=haar_highpass)


def _logit_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Patch logits: real (3, 4), fake (2, 4)."""
    r = torch.randn(3, 4, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    f = torch.randn(2, 4, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    return (r, f)


def _views_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """HR (4, 3, 8, 8) and LR (4, 3, 4, 4) in [0, 1]."""
    return (
        _rand(g, 4, 3, _H, _H, dtype=dtype, device=device),
        _rand(g, 4, 3, _H // 2, _H // 2, dtype=dtype, device=device),
    )


def _views_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    out = unit(*inputs, generator=generator)
    return (out.positives, out.negatives)


_QUANTISED = (
    "the sharpened and blurred views are quantised to 8 bits (piecewise constant); the "
    "sampler has no gradient contract"
)

CONTRACTS: dict[str, Contract] = {
    "PCLSRLoss": Contract(
        make=loss("PCLSRLoss", detach_sr_features=False),
        inputs=_loss_inputs,
        call=_loss_call,
        repr_has=("detach_sr_features=False",),
        grad_args=(0,),
    ),
    "PCLSRDualContrastiveLoss": Contract(
        make=loss("PCLSRDualContrastiveLoss"),
        inputs=_logit_inputs,
        call=call_module,
        repr_has=(),
        grad_args=(0, 1),
    ),
    "PCLSRViews": Contract(
        make=loss("PCLSRViews", 2, kernel_range=(3, 7), sigma_range=(0.2, 1.5)),
        inputs=_views_inputs,
        call=_views_call,
        repr_has=("num_copies=2", "kernel_range=(3, 7)", "sigma_range=(0.2, 1.5)"),
        draws=True,
        half_dtype=None,  # image views keep the input's dtype
        not_applicable={"grad": _QUANTISED, "grad_flow": _QUANTISED},
    ),
}
