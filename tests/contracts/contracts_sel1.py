"""Contract entries of the multi-sample dropout head and the class-dependent compression loss.

``MultiSampleDropout`` owns its shared head (a Linear layer built from a fixed seed in the
inputs' dtype, so half inputs meet half weights and the logits keep the input's dtype); it
draws its masks from the generator (train mode). ``ClassDependentLoss`` is a stateless loss
(float32 for half logits).
"""

from __future__ import annotations

import torch
from torch import nn

from contract_kit import B, Contract, D, Inputs, call_module, cls, loss, randn, seeded

N_CLASSES = 3


def _make_msd(dtype: torch.dtype, device: torch.device) -> nn.Module:
    head = seeded(lambda: nn.Linear(D, N_CLASSES))
    module: nn.Module = cls("MultiSampleDropout")(head, num_samples=3, p=0.25)
    return module.to(device=device, dtype=dtype)


def _msd_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, B, D, dtype=dtype, device=device),)


def _msd_call(unit: nn.Module, inputs: Inputs, generator: torch.Generator | None) -> torch.Tensor:
    return unit(*inputs, generator=generator)


def _cd_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    labels = torch.tensor([0, 1, 1, 0], device=device)
    return (randn(g, B, 2, dtype=dtype, device=device), labels)


CONTRACTS: dict[str, Contract] = {
    "MultiSampleDropout": Contract(
        make=_make_msd,
        inputs=_msd_inputs,
        call=_msd_call,
        repr_has=("num_samples=3", "p=0.25", "average='loss'"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,  # the head is built in the inputs' dtype: logits keep it
    ),
    "ClassDependentLoss": Contract(
        make=loss("ClassDependentLoss", pos_weight=(1.0, 3.0), ranking_weight=0.5),
        inputs=_cd_inputs,
        call=call_module,
        repr_has=("pos_weight=(1.0, 3.0)", "ranking_weight=0.5", "detach_ranking=False"),
        grad_args=(0,),
    ),
}
