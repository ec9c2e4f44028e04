"""Contract entries of CLIPN (``posneg.ood.clipn``): its loss, "no" prompts and OOD score.

Feature inputs are unit rows (the loss takes L2-normalised features, as the official model's
forward gives them; TSO's square root needs ``t.t_no <= 1``). The prompt module is made with
non-zero prompts (seeded), so that another generator seed draws other prompts; its output
follows the embeddings' dtype. The score's output follows its inputs' dtype (no reduction).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from contract_kit import B, Contract, D, Inputs, call_module, cls, loss, randn, seeded


def _unit(
    g: torch.Generator, *shape: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    x = F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)
    return x.to(dtype=dtype, device=device)


def _loss_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        _unit(g, B, D, dtype=dtype, device=device),
        _unit(g, B, D, dtype=dtype, device=device),
        _unit(g, B, D, dtype=dtype, device=device),
        10.0,
    )


def _score_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, B, D, dtype=dtype, device=device),
        _unit(g, 3, D, dtype=dtype, device=device),
        _unit(g, 3, D, dtype=dtype, device=device),
    )


def _make_prompt(dtype: torch.dtype, device: torch.device) -> nn.Module:
    def build() -> nn.Module:
        m: Any = cls("CLIPNNoPrompt")(context_length=5, width=D, num_prompts=3)
        with torch.no_grad():
            m.prompt.copy_(torch.randn(3, 5, D, generator=torch.Generator().manual_seed(0)))
        return m

    module: nn.Module = seeded(build)
    return module.to(device)


def _prompt_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, B, 4, D, dtype=dtype, device=device),)


def _call_prompt(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


CONTRACTS: dict[str, Contract] = {
    "CLIPNLoss": Contract(
        make=loss("CLIPNLoss", tso_mode="cosine", weight=0.7),
        inputs=_loss_inputs,
        call=call_module,
        repr_has=("tso_mode='cosine'", "weight=0.7"),
        grad_args=(0, 1, 2),
    ),
    "CLIPNNoPrompt": Contract(
        make=_make_prompt,
        inputs=_prompt_inputs,
        call=_call_prompt,
        repr_has=("context_length=5", "width=3", "num_prompts=3"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,
    ),
    "CLIPNScore": Contract(
        make=loss("CLIPNScore", rule="ctw", logit_scale=5.0),
        inputs=_score_inputs,
        call=call_module,
        repr_has=("rule='ctw'", "logit_scale=5.0"),
        grad_args=(0, 1, 2),
        half_dtype=None,
    ),
}
