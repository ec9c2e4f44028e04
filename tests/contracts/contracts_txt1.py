"""Contract entries of RAFT's selector and the imperfect-verifier closed forms (posneg.text).

``RAFTSelector`` returns index tensors; the call here also returns the kept rewards
(``rewards[prompt, sample]``), so the float checks (dtype, half, gradients through the
selection's gather) have a floating output. ``ImperfectVerifier`` maps per-problem success
rates ``r`` and attempt counts ``k`` to the closed-form accuracy; neither draws.
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import B, Contract, Inputs, loss


def _raft_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    r = torch.rand(B, 3, generator=g, dtype=torch.float64)
    return (r.to(dtype=dtype, device=device),)


def _raft_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    sel = unit(*inputs)
    return sel, inputs[0][sel.prompt, sel.sample]


def _verifier_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    r = 0.1 + 0.8 * torch.rand(B, generator=g, dtype=torch.float64)
    return (r.to(dtype=dtype, device=device), torch.arange(1, B + 1, device=device))


CONTRACTS: dict[str, Contract] = {
    "RAFTSelector": Contract(
        make=loss("RAFTSelector", "top", top_fraction=0.5),
        inputs=_raft_inputs,
        call=_raft_call,
        repr_has=("strategy='top'", "top_fraction=0.5"),
        grad_args=(0,),
        half_dtype=None,  # the kept rewards are gathered from the input: its dtype
    ),
    "ImperfectVerifier": Contract(
        make=loss("ImperfectVerifier", fpr=0.3, fnr=0.1, cost=2.0),
        inputs=_verifier_inputs,
        call=lambda unit, inputs, g: unit(*inputs),
        repr_has=("fpr=0.3", "fnr=0.1", "cost=2.0"),
        grad_args=(0,),
        half_dtype=None,  # elementwise closed form in the input's dtype
    ),
}
