"""Contract entries of CDvG, EchoGAINS and the MhERGAN stand-in (issue 18, syn3).

``CDvGLoss`` is CE on logits (B, C) = (4, 3) plus NT-Xent between two (B, D) projections: smooth
in logits and projections. ``EchoGAINSAugment`` warps (4, 8, 8) frames inside a fan-shaped
sector and draws its transforms from the generator. ``MHERGANSelector`` fits its calibration on
(E, M) held-out logits, then runs MH chains over (E, N, K) proposal logits: its output is
indices.
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import B, Contract, D, Inputs, call_module, loss, randn


def _cdvg_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, B, 3, dtype=dtype, device=device),
        torch.tensor([0, 1, 2, 0], device=device),
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, B, D, dtype=dtype, device=device),
    )


def _frames(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Four 8x8 frames: a fan-shaped sector with random texture, a 3x3 label of class 1 and a
    2x2 one of class 2 inside it."""
    r = torch.arange(8.0)[:, None]
    c = torch.arange(8.0)[None, :]
    sector = torch.atan2(c - 4, r + 0.5).abs() < 0.8
    tex = 0.2 + 0.8 * torch.rand(4, 8, 8, generator=g, dtype=torch.float64)
    image = (tex * sector).to(dtype=dtype, device=device)
    label = torch.zeros(4, 8, 8, dtype=torch.long)
    label[:, 3:6, 3:6] = 1
    label[:, 6:8, 3:5] = 2
    return (image, label.to(device))


def _call_drawing(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


def _mh_make(dtype: torch.dtype, device: torch.device) -> Any:
    return loss("MHERGANSelector", c=0.5)(dtype, device)


def _mh_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Held-out real and fake logits (E, M) = (3, 10), chain starts (3, 5), proposals (3, 5, 6)."""
    return (
        randn(g, 3, 10, dtype=dtype, device=device) + 1,
        randn(g, 3, 10, dtype=dtype, device=device) - 1,
        randn(g, 3, 5, dtype=dtype, device=device),
        randn(g, 3, 5, 6, dtype=dtype, device=device),
    )


def _mh_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    real, fake, start, proposals = inputs
    unit.fit(real, fake)
    return unit(start, proposals, generator=generator)


_INDICES = "the output is int64 proposal indices and accept counts (no floating output)"

CONTRACTS: dict[str, Contract] = {
    "CDvGLoss": Contract(
        make=loss("CDvGLoss", weight=0.5, temperature=0.2, reduction="sum"),
        inputs=_cdvg_inputs,
        call=call_module,
        repr_has=("weight=0.5", "temperature=0.2", "reduction='sum'"),
        grad_args=(0, 2, 3),
    ),
    "EchoGAINSAugment": Contract(
        make=loss(
            "EchoGAINSAugment",
            depth_range=(0, 3),
            rotation_range=(-20, 20),
            width_range=(0.7, 1.3),
            radius_range=(0, 2),
            prob=0.6,
            border=2,
        ),
        inputs=_frames,
        call=_call_drawing,
        repr_has=("depth_range=(0, 3)", "rotation_range=(-20, 20)", "prob=0.6", "border=2"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,  # the frames keep their dtype (warps run in float32 for half inputs)
        not_applicable={
            "grad": "the sector is read from the frame's zero pixels (S = I != 0), so a finite "
            "difference on a masked pixel changes the sector: not differentiable there",
        },
    ),
    "MHERGANSelector": Contract(
        make=_mh_make,
        inputs=_mh_inputs,
        call=_mh_call,
        repr_has=("c=0.5", "calibrate=True"),
        draws=True,
        not_applicable={
            "grad": "Metropolis-Hastings selection returns indices: no gradient",
            "grad_flow": "Metropolis-Hastings selection returns indices: no gradient",
            "dtype": _INDICES,
            "half": _INDICES,
        },
    ),
}
