"""Contract entries of the UNPG unit and its margin heads (``posneg.losses.unpg``).

The three modules are classifier heads: each owns a (C, D) class-weight parameter, drawn from a
fixed generator at construction (the global RNG untouched), so two ``make`` calls build equal
units. The parameter follows float32/float64 inputs; half inputs meet float32 parameters and the
loss reduces in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from contract_kit import Contract, Inputs, call_module, cls, randn

N_CLASSES, N, DIM = 3, 6, 3


def _make(name: str, **hyper: Any) -> Callable[[torch.dtype, torch.device], nn.Module]:
    def make(dtype: torch.dtype, device: torch.device) -> nn.Module:
        init = torch.Generator().manual_seed(0)
        module: nn.Module = cls(name)(N_CLASSES, DIM, generator=init, **hyper)
        return module.to(device=device, dtype=dtype if dtype == torch.float64 else torch.float32)

    return make


def _inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    labels = torch.tensor([0, 1, 0, 2, 1, 2], device=device)  # 12 different-identity pairs
    return (randn(g, N, DIM, dtype=dtype, device=device), labels)


_HEAD = ("num_classes=3", "embedding_dim=3", "scale=8.0", "margin=0.3")

CONTRACTS: dict[str, Contract] = {
    "CosFaceLoss": Contract(
        make=_make("CosFaceLoss", scale=8.0, margin=0.3),
        inputs=_inputs,
        call=call_module,
        repr_has=_HEAD,
        grad_args=(0,),
    ),
    "ArcFaceLoss": Contract(
        make=_make("ArcFaceLoss", scale=8.0, margin=0.3),
        inputs=_inputs,
        call=call_module,
        repr_has=_HEAD,
        grad_args=(0,),
    ),
    "UNPGLoss": Contract(
        make=_make("UNPGLoss", head="cosface", scale=8.0, margin=0.3, wisk=1.0),
        inputs=_inputs,
        call=call_module,
        repr_has=(*_HEAD, "head='cosface'", "wisk=1.0"),
        grad_args=(0,),
    ),
}
