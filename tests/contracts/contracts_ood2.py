"""Contract entries of posneg.adversarial: FGSM, PGD, AAERLoss and IRAD.

The attacks and AAER take the model as their first input: a seeded linear classifier on
flattened 2x2 images, cast to the inputs' dtype. IRAD is a tiny local implicit image and
SampleNet built from a fixed seed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from contract_kit import B, Contract, Inputs, cls, randn, seeded

_DETACHED = (
    "returns detached adversarial inputs (the attack's gradient is taken inside, as "
    "torchattacks and the papers do): no gradient flows to the inputs by design"
)
_PARAMS_ONLY = (
    "the training objective's gradient goes to the model's parameters only: the official "
    "loop detaches x, the random start and the first forward (CIFAR10/AAER.py)"
)


def _classifier(dtype: torch.dtype, device: torch.device) -> nn.Module:
    model: nn.Module = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
    return model.to(dtype=dtype, device=device)


def _attack_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    x = randn(g, B, 1, 2, 2, dtype=torch.float64, device=device).sigmoid().to(dtype)
    y = torch.tensor([0, 1, 2, 1], device=device)
    return (_classifier(dtype, device), x, y)


def _call_drawing(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


def _make_irad(dtype: torch.dtype, device: torch.device) -> Any:
    from posneg.adversarial.irad import LocalImplicitImage, SampleNet

    def build() -> Any:
        recon = LocalImplicitImage(channels=1, features=4, hidden=(6,))
        return cls("IRAD")(recon, SampleNet(recon.encoder, hidden=(3,)))

    return seeded(build).to(dtype=dtype, device=device)


def _irad_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, 2, 1, 3, 3, dtype=torch.float64, device=device).sigmoid().to(dtype),)


CONTRACTS: dict[str, Contract] = {
    "FGSM": Contract(
        make=lambda dtype, device: cls("FGSM")(epsilon=0.1, clamp=None),
        inputs=_attack_inputs,
        call=lambda unit, inputs, generator: unit(*inputs),
        repr_has=("epsilon=0.1", "clamp=None"),
        half_dtype=None,
        not_applicable={"grad": _DETACHED, "grad_flow": _DETACHED},
    ),
    "PGD": Contract(
        make=lambda dtype, device: cls("PGD")(epsilon=0.2, step_size=0.05, steps=3, norm="l2"),
        inputs=_attack_inputs,
        call=_call_drawing,
        repr_has=("epsilon=0.2", "step_size=0.05", "steps=3", "norm='l2'"),
        draws=True,
        half_dtype=None,
        not_applicable={"grad": _DETACHED, "grad_flow": _DETACHED},
    ),
    "AAERLoss": Contract(
        make=lambda dtype, device: cls("AAERLoss")(
            epsilon=0.2, alpha=1.25, project=True, lambda2=2.5
        ),
        inputs=_attack_inputs,
        call=_call_drawing,
        repr_has=("epsilon=0.2", "alpha=1.25", "project=True", "lambda2=2.5"),
        draws=True,
        half_dtype=None,
        not_applicable={"grad": _PARAMS_ONLY, "grad_flow": _PARAMS_ONLY},
    ),
    "IRAD": Contract(
        make=_make_irad,
        inputs=_irad_inputs,
        call=lambda unit, inputs, generator: unit(*inputs),
        repr_has=("LocalImplicitImage", "SampleNet", "hidden=(3,)"),
        grad_args=(0,),
        half_dtype=None,
    ),
}
