"""Contract entries of EPS-AD (``posneg.ood.eps_ad``) and UniCon-HA (``posneg.ood.unicon_ha``).

``EPSAD`` is fitted on one batch of inputs and scores another, with the closed-form
:class:`~posneg.ood.eps_ad.GaussianScore` as its score model (picklable, no weights); it draws
the perturbation noise from ``generator``. ``UniCLRLoss`` takes two views and the inlier flags.
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import B, Contract, D, Inputs, call_module, cls, randn

_NO_GRAD = (
    "a detection statistic computed under no_grad (official eval_epsad.py scores and MMD_batch "
    "run under torch.no_grad): not an objective"
)


def _make_epsad(dtype: torch.dtype, device: torch.device) -> Any:
    from posneg.ood.eps_ad import GaussianScore

    return cls("EPSAD")(GaussianScore(0.1, 0.5), diffuse_t=3, bandwidth=2.0)


def _image_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, 2 * B, 1, 2, 2, dtype=dtype, device=device).sigmoid(),
        randn(g, B, 1, 2, 2, dtype=dtype, device=device).sigmoid(),
    )


def _fit_then_score(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    ref, queries = inputs
    return unit.fit(ref, generator=generator).score(queries, generator=generator)


def _uniclr_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    flags = torch.tensor([True, True, False, False], device=device)
    return (
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, B, D, dtype=dtype, device=device),
        flags,
    )


CONTRACTS: dict[str, Contract] = {
    "EPSAD": Contract(
        make=_make_epsad,
        inputs=_image_inputs,
        call=_fit_then_score,
        repr_has=("diffuse_t=3", "bandwidth=2.0"),
        draws=True,
        half_dtype=None,
        not_applicable={"grad": _NO_GRAD, "grad_flow": _NO_GRAD},
    ),
    "UniCLRLoss": Contract(
        make=lambda dtype, device: cls("UniCLRLoss")(
            0.3, soft_aggregation=True, temperature_w=0.7
        ).to(device),
        inputs=_uniclr_inputs,
        call=call_module,
        repr_has=("temperature=0.3", "soft_aggregation=True", "temperature_w=0.7"),
        grad_args=(0, 1),
        # the soft-aggregation weights are detached (documented choice), so finite differences
        # through them disagree with autograd by design: gradcheck the un-weighted loss.
        grad_make=lambda dtype, device: cls("UniCLRLoss")(0.3).to(device),
    ),
}
