"""Contract entries of Perp-Neg guidance and NegToMe (issue 17, gen1).

``PerpNegGuidance`` combines three noise predictions (unconditional, prompt, one negative) of
shape (B, D) = (4, 3); it is linear-plus-projection in them, so gradcheck applies to all three.
``NegToMe`` merges the tokens of a (F, N, D) = (3, 4, 3) batch with frame 0's; with dropout it
draws a per-token mask from the generator. Its output is piecewise linear in the tokens (the
argmax and threshold are locally constant), so gradcheck applies away from ties.
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import B, Contract, D, Inputs, call_module, loss, randn


def _eps(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    eu = randn(g, B, D, dtype=dtype, device=device)
    ep = randn(g, B, D, dtype=dtype, device=device)
    en = randn(g, 1, B, D, dtype=dtype, device=device)
    return (eu, ep, en)


def _tokens(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, 3, 4, 3, dtype=dtype, device=device),)


def _call_drawing(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


CONTRACTS: dict[str, Contract] = {
    "PerpNegGuidance": Contract(
        make=loss("PerpNegGuidance", guidance_scale=5.0, neg_weights=1.5, variant="3d"),
        inputs=_eps,
        call=call_module,
        repr_has=("method='perp_neg'", "guidance_scale=5.0", "neg_weights=1.5", "variant='3d'"),
        grad_args=(0, 1, 2),
        half_dtype=None,  # the guided prediction keeps the predictions' dtype
    ),
    "NegToMe": Contract(
        make=loss("NegToMe", alpha=0.5, threshold=0.0, dropout=0.3, match_axis="paper"),
        inputs=_tokens,
        call=_call_drawing,
        repr_has=("alpha=0.5", "threshold=0.0", "dropout=0.3", "match_axis='paper'"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,  # merged tokens keep the hidden states' dtype
    ),
}
