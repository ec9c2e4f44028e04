"""Contract entries for CET (CETLoss) and NBPO (the NBPO update module)."""

from __future__ import annotations

import torch

from contract_kit import B, Contract, Inputs, call_module, loss, randn


def _cet_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    # R's and S's positive/negative scores (P,), then the eval-mode negative scores that set
    # the weights: passed explicitly, so gradcheck sees the weights as the constants they are
    # (they are detached inside, as the code computes them under no_grad)
    return tuple(randn(g, B, dtype=dtype, device=device) for _ in range(6))


_N_USERS, _N_ITEMS, _K = 3, 5, 2


def _nbpo_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    factors = tuple(
        0.5 * randn(g, n, _K, dtype=dtype, device=device)
        for n in (_N_USERS, _N_ITEMS, _N_USERS, _N_ITEMS)
    )
    users = torch.tensor([0, 1, 2, 1], device=device)
    pos = torch.tensor([0, 1, 2, 3], device=device)
    neg = torch.tensor([[4, 3], [0, 2], [1, 4], [2, 0]], device=device)
    return (*factors, users, pos, neg)


_UPDATE_RULE = (
    "a non-gradient update rule (the paper's NBPO directions are no objective's gradient): "
    "it returns new factors, there is no loss to differentiate"
)

CONTRACTS: dict[str, Contract] = {
    "CETLoss": Contract(
        make=loss("CETLoss", debias_ratio=2.0),
        inputs=_cet_inputs,
        call=call_module,
        repr_has=("debias_ratio=2.0",),
        grad_args=(0, 1, 2, 3),
    ),
    "NBPO": Contract(
        make=loss("NBPO", variant="nbpoo", lr=0.01, reg=0.5, reg_flip=1.0),
        inputs=_nbpo_inputs,
        call=call_module,
        repr_has=("variant='nbpoo'", "lr=0.01", "reg=0.5", "reg_flip=1.0"),
        half_dtype=None,
        not_applicable={"grad": _UPDATE_RULE, "grad_flow": _UPDATE_RULE},
    ),
}
