"""Contract entries of AR2 (``posneg.mining.strategies.ar2``) and CoCoSoDa
(``posneg.mining.strategies.cocosoda``): stateless losses over embedding groups."""

from __future__ import annotations

import torch

from contract_kit import B, Contract, D, Inputs, call_module, loss, randn

G = 3


def _ar2_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, B, G, D, dtype=dtype, device=device),
        randn(g, B, G, dtype=dtype, device=device),
    )


def _cocosoda_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return tuple(
        torch.nn.functional.normalize(randn(g, B, D, dtype=dtype, device=device), dim=1)
        for _ in range(4)
    )


CONTRACTS: dict[str, Contract] = {
    "AR2Loss": Contract(
        make=loss("AR2Loss", adv_lambda=0.3, temperature=2.0, adv_reduction="mean"),
        inputs=_ar2_inputs,
        call=call_module,
        repr_has=("adv_lambda=0.3", "temperature=2.0", "adv_reduction='mean'"),
        grad_args=(0, 1),  # the ranker logits are read under no_grad, as the code does
    ),
    "CoCoSoDaLoss": Contract(
        make=loss("CoCoSoDaLoss", temperature=0.5, scale=2.0, inner=True),
        inputs=_cocosoda_inputs,
        call=call_module,
        repr_has=("temperature=0.5", "scale=2.0", "inner=True"),
        grad_args=(0, 1),  # code_k, nl_k are momentum keys: detached, as the code does
    ),
}
