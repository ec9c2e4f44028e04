"""Contract entries of CQ-DINO's units (``posneg.detection.cq_dino``).

``CQDINOSelectionLoss`` is a stateless loss over ``(B, C)`` selection logits (built with a small
category tree so the ancestor mask is exercised). Its focusing weight is computed without
gradient, as released, so the analytic Jacobian is not the numerical one: ``gradcheck`` runs on
the same loss with ``gamma_neg = gamma_pos = 0`` (``grad_make``), where the weight is 1.
``CategoryTreeAggregation`` owns a LayerNorm; its parameters follow float32/float64 inputs and
half inputs meet float32 parameters (float32 output).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from contract_kit import Contract, Inputs, call_module, cls, randn, seeded

PARENTS = (-1, 0, 0, 1, 1)
C, BATCH, DIM = len(PARENTS), 3, 4


def _selection_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    targets = torch.tensor(
        [[0, 0, 0, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=dtype, device=device
    )
    return (randn(g, BATCH, C, dtype=dtype, device=device) * 2, targets)


def _selection(**hyper: Any) -> Callable[[torch.dtype, torch.device], nn.Module]:
    def make(dtype: torch.dtype, device: torch.device) -> nn.Module:
        module: nn.Module = cls("CQDINOSelectionLoss")(parents=list(PARENTS), **hyper)
        return module.to(device)

    return make


def _tree(dtype: torch.dtype, device: torch.device) -> nn.Module:
    module: nn.Module = seeded(
        lambda: cls("CategoryTreeAggregation")(parents=list(PARENTS), dim=DIM, merge_depth=1)
    )
    keep = dtype if dtype == torch.float64 else torch.float32
    return module.to(device=device, dtype=keep)


def _tree_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, BATCH, C, DIM, dtype=dtype, device=device),)


CONTRACTS: dict[str, Contract] = {
    "CQDINOSelectionLoss": Contract(
        make=_selection(gamma_neg=3.0, gamma_pos=1.0, clip=0.1),
        inputs=_selection_inputs,
        call=call_module,
        repr_has=("gamma_neg=3.0", "gamma_pos=1.0", "clip=0.1", "parents=5 nodes"),
        grad_args=(0,),
        grad_make=_selection(gamma_neg=0.0, gamma_pos=0.0, clip=0.1),
    ),
    "CategoryTreeAggregation": Contract(
        make=_tree,
        inputs=_tree_inputs,
        call=call_module,
        repr_has=("num_categories=5", "dim=4", "merge_depth=1"),
        grad_args=(0,),
    ),
}
