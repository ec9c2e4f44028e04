"""Contracts of sel3's units: ``CoresetSelector`` (posneg.selection.coresets) and ``ForAug``
(posneg.augment.foraug).

``CoresetSelector`` maps logits, labels and features to a weighted index set: it draws nothing and
its indices are discrete, so it has no gradient contract. ``ForAug`` draws sizes, crops,
positions and edge sigmas from the generator; like the other augmentation units it keeps the
input's dtype and has no gradient contract (crops and the re-hardened mask are piecewise).
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import Contract, Inputs, loss, randn

_N, _C, _E = 12, 3, 2


def _coreset_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    logits = randn(g, _N, _C, dtype=dtype, device=device)
    labels = (torch.arange(_N) % _C).to(device)
    feats = randn(g, _N, _E, dtype=dtype, device=device)
    return (logits, labels, feats)


def _call_coreset(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs)


def _foraug_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    fg = torch.rand(3, 3, 6, 6, generator=g, dtype=torch.float64)
    alpha = (fg.mean(1, keepdim=True) > 0.4).to(torch.float64)
    bg = torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float64)
    return tuple(t.to(dtype=dtype, device=device) for t in (fg, alpha, bg))


def _call_foraug(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


_NO_GRAD_CORESET = "a selection: discrete indices and cluster counts, no gradient contract"
_NO_GRAD_FORAUG = (
    "augmentation: integer sizes, crops and positions, a thresholded edge mask; "
    "augmentation has no gradient contract"
)

CONTRACTS: dict[str, Contract] = {
    "CoresetSelector": Contract(
        make=loss("CoresetSelector", num_classes=_C, fraction=0.5, normalize_weights=False),
        inputs=_coreset_inputs,
        call=_call_coreset,
        repr_has=("num_classes=3", "fraction=0.5", "normalize_weights=False"),
        half_dtype=None,  # weights follow the logits' dtype
        not_applicable={"grad": _NO_GRAD_CORESET, "grad_flow": _NO_GRAD_CORESET},
    ),
    "ForAug": Contract(
        make=loss("ForAug", jitter=0.2, size_mode="max", bates_n=2, mask_sigma=2.0),
        inputs=_foraug_inputs,
        call=_call_foraug,
        repr_has=("jitter=0.2", "size_mode='max'", "bates_n=2", "mask_sigma=2.0"),
        draws=True,
        half_dtype=None,  # augmentation keeps the input's dtype
        not_applicable={"grad": _NO_GRAD_FORAUG, "grad_flow": _NO_GRAD_FORAUG},
    ),
}
