"""Contract entry of Grounded Teacher's relation-weighted loss (posneg.detection.grounded_teacher).

``RelationWeightedLoss`` is a stateless loss over ``(B, K + 1)`` ROI logits, ``(B,)`` hard labels
and a ``(K, K)`` class relation. Its per-ROI weights depend on the arg max of the logits and carry
no gradient (as released), so ``gradcheck`` differentiates the cross-entropy through the logits
only; the random logits have no ties, so the finite differences do not flip the arg max.
"""

from __future__ import annotations

import torch

from contract_kit import B, Contract, Inputs, call_module, loss, randn

K = 3


def _inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    logits = randn(g, B, K + 1, dtype=dtype, device=device)
    labels = torch.tensor([0, 1, 2, 3], device=device)
    relation = (torch.rand(K, K, generator=g, dtype=torch.float64) * 0.3).to(
        dtype=dtype, device=device
    )
    relation = relation + torch.eye(K, dtype=dtype, device=device) * 0.5
    return (logits, labels, relation)


CONTRACTS: dict[str, Contract] = {
    "RelationWeightedLoss": Contract(
        make=loss("RelationWeightedLoss", log_loss=False, reg=0.5, reduction="sum"),
        inputs=_inputs,
        call=call_module,
        repr_has=("log_loss=False", "reg=0.5", "reduction='sum'"),
        grad_args=(0,),
    ),
}
