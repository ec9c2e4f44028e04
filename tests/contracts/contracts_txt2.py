"""Contract entries of the per-step DPO loss and DISCO's teacher filter (posneg.text).

``PerStepDPOLoss`` takes four ``(B,)`` summed log-probabilities (policy/reference, chosen/
rejected); ``DiscoTeacherFilter`` takes ``(T, B, C)`` teacher probabilities on the original and
counterfactual pairs and the ``(B,)`` original and target labels, and returns the ``(B,)``
ensemble scores. Neither draws.
"""

from __future__ import annotations

import torch

from contract_kit import B, Contract, Inputs, call_module, loss, randn


def _dpo_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return tuple(randn(g, B, dtype=dtype, device=device) for _ in range(4))


def _disco_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    p = torch.softmax(torch.randn(2, B, 3, generator=g, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(2, B, 3, generator=g, dtype=torch.float64), -1)
    y = torch.randint(3, (B,), generator=g)
    y2 = (y + 1 + torch.randint(2, (B,), generator=g)) % 3
    return (
        p.to(dtype=dtype, device=device),
        q.to(dtype=dtype, device=device),
        y.to(device),
        y2.to(device),
    )


CONTRACTS: dict[str, Contract] = {
    "PerStepDPOLoss": Contract(
        make=loss("PerStepDPOLoss", beta=0.2, reduction="sum"),
        inputs=_dpo_inputs,
        call=call_module,
        repr_has=("beta=0.2", "reduction='sum'"),
        grad_args=(0, 1),
    ),
    "DiscoTeacherFilter": Contract(
        make=loss("DiscoTeacherFilter", threshold=0.3),
        inputs=_disco_inputs,
        call=call_module,
        repr_has=("threshold=0.3",),
        grad_args=(0, 1),
        half_dtype=None,  # differences of gathered probabilities, in the input's dtype
    ),
}
