"""Contract entries of det4's units: ``WSCoLLoss`` (posneg.detection.wscol) and
``CategoryQuerySelector`` (posneg.detection.cq_dino).

``WSCoLLoss`` is a stateless loss over strong features ``(N, D)`` (differentiated), weak features
``(N, D)`` (they only pick the trusted pairs: a discrete choice, not differentiated) and
pseudo-labels ``(N,)``; the labels hold untrusted pairs so the released ``merge`` branch runs.
``CategoryQuerySelector`` owns parameters (initialised from a fixed seed); they follow
float32/float64 inputs and half inputs meet float32 parameters (float32 output); its output
also holds the int64 top-K indices.
"""

from __future__ import annotations

import torch
from torch import nn

from contract_kit import Contract, Inputs, call_module, cls, loss, randn, seeded

N, DIM, K = 10, 4, 3


def _wscol_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 3, 3, 2], device=device)
    return (
        randn(g, N, DIM, dtype=dtype, device=device),
        randn(g, N, DIM, dtype=dtype, device=device),
        labels,
        5.0,
    )


def _selector(dtype: torch.dtype, device: torch.device) -> nn.Module:
    def build() -> nn.Module:
        emb = torch.randn(5, 4)
        module: nn.Module = cls("CategoryQuerySelector")(
            embeddings=emb,
            image_dim=3,
            encoder_width=4,
            num_heads=2,
            num_layers=1,
            ffn_dim=8,
            k=2,
            parents=[-1, 0, 0, 1, -1],
        )
        return module

    module: nn.Module = seeded(build)
    keep = dtype if dtype == torch.float64 else torch.float32
    return module.to(device=device, dtype=keep)


def _selector_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, 2, 3, 2, 2, dtype=dtype, device=device),)


CONTRACTS: dict[str, Contract] = {
    "WSCoLLoss": Contract(
        make=loss("WSCoLLoss", num_classes=K, temperature=0.5, alpha=0.25, weight=0.5),
        inputs=_wscol_inputs,
        call=call_module,
        repr_has=("num_classes=3", "temperature=0.5", "alpha=0.25", "weight=0.5"),
        grad_args=(0,),
    ),
    "CategoryQuerySelector": Contract(
        make=_selector,
        inputs=_selector_inputs,
        call=call_module,
        repr_has=("num_categories=5", "image_dim=3", "num_heads=2", "k=2", "parents=5 nodes"),
        grad_args=(0,),
    ),
}
