"""Contract entries of FixMatch's loss and SAA's strong-view module (issue 15, sel2).

``FixMatchLoss`` is a stateless loss over (weak, strong) logits; the weak logits only give
pseudo-labels (detached), so gradcheck differentiates the strong logits.
``SampleAdaptiveAugmentation`` wraps a RandAugment and draws its views and paste directions from
the generator; like the other augmentation units it keeps the input's dtype and has no
gradient contract.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from contract_kit import Contract, Inputs, call_module, cls, randn

_NAIVE = (True, False, True, False)


def _logits(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    weak = 3 * randn(g, 4, 3, dtype=dtype, device=device)
    return (weak, randn(g, 4, 3, dtype=dtype, device=device))


def _make_fixmatch(dtype: torch.dtype, device: torch.device) -> nn.Module:
    module: nn.Module = cls("FixMatchLoss")(threshold=0.5, lambda_u=0.5)
    return module.to(device)


def _make_saa(dtype: torch.dtype, device: torch.device) -> nn.Module:
    from posneg.augment.randaugment import RandAugment

    module: nn.Module = cls("SampleAdaptiveAugmentation")(RandAugment(num_ops=2, magnitude=9))
    return module.to(device)


def _images(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    x = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    return (x, torch.tensor(_NAIVE, device=device))


def _call_drawing(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


_NO_GRAD = (
    "image ops are piecewise constant in the input (posterize, equalize, nearest resampling, "
    "the half-paste); augmentation has no gradient contract"
)

CONTRACTS: dict[str, Contract] = {
    "FixMatchLoss": Contract(
        make=_make_fixmatch,
        inputs=_logits,
        call=call_module,
        repr_has=("threshold=0.5", "lambda_u=0.5"),
        grad_args=(1,),
        half_dtype=None,  # the loss is cast back to the logits' dtype
    ),
    "SampleAdaptiveAugmentation": Contract(
        make=_make_saa,
        inputs=_images,
        call=_call_drawing,
        repr_has=("num_ops=2", "magnitude=9"),
        draws=True,
        half_dtype=None,  # augmentation keeps the input's dtype
        not_applicable={"grad": _NO_GRAD, "grad_flow": _NO_GRAD},
    ),
}
