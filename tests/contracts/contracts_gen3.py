"""Contract entries of Adapt-then-Unlearn (``posneg.generative.unlearn``).

Both modules take parameter dicts; the entries build the dicts from tensor inputs (two
"parameters" ``w`` (B, D) and ``b`` (D,)) so the shared checks can differentiate them. Neither
draws; outputs keep the inputs' dtype (half included).
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import B, Contract, D, Inputs, loss, randn


def _repel_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, D, dtype=dtype, device=device),
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, D, dtype=dtype, device=device),
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, D, dtype=dtype, device=device),
    )


def _repel_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    w, b, w1, b1, w2, b2 = inputs
    return unit({"w": w, "b": b}, [{"w": w1, "b": b1}, {"w": w2, "b": b2}])


def _ewc_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, B, D, dtype=dtype, device=device).abs(),
    )


def _ewc_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    p, m, f = inputs
    return unit({"w": p}, {"w": m}, {"w": f})


CONTRACTS: dict[str, Contract] = {
    "EWCPenalty": Contract(
        make=loss("EWCPenalty", lam=3.0),
        inputs=_ewc_inputs,
        call=_ewc_call,
        repr_has=("lam=3",),
        grad_args=(0, 1, 2),
        half_dtype=None,
    ),
    "RepulsionLoss": Contract(
        make=loss("RepulsionLoss", gamma=0.8, kind="exp", k_scale="over"),
        inputs=_repel_inputs,
        call=_repel_call,
        repr_has=("gamma=0.8", "kind='exp'", "k_scale='over'"),
        grad_args=(0, 1, 2, 3),
        half_dtype=None,
    ),
}
