"""Contracts of seg's unit: ``ObserverLabelFusion`` (posneg.selection.observers).

The unit fuses (N, K, *S) observer masks into one (N, *S) target; ``random`` draws one observer
per frame from the generator. Label fusion builds targets: it keeps the input's floating dtype
and has no gradient contract.
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import Contract, Inputs, loss

_N, _K, _S = 5, 3, 4


def _fusion_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    masks = (torch.rand(_N, _K, _S, _S, generator=g) > 0.5).to(dtype=dtype, device=device)
    return (masks,)


def _call_fusion(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


_NO_GRAD = "label fusion builds training targets from observer masks; no gradient contract"

CONTRACTS: dict[str, Contract] = {
    "ObserverLabelFusion": Contract(
        make=loss("ObserverLabelFusion", strategy="random"),
        inputs=_fusion_inputs,
        call=_call_fusion,
        repr_has=("strategy='random'",),
        draws=True,
        half_dtype=None,  # the fused target keeps the masks' floating dtype
        not_applicable={"grad": _NO_GRAD, "grad_flow": _NO_GRAD},
    ),
}
