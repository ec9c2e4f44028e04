"""Contract entries for the OOD detectors of ``posneg.ood.baselines`` and
``posneg.ood.mahalanobis``: every detector is fitted on one batch, then scores another."""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import B, Contract, D, Inputs, call_module, cls, randn

_DETACHED = "k-NN search on detached normalised features: the score is not differentiated"
_ENSEMBLE_NO_GRAD = (
    "layer confidences are computed under no_grad after the input step (official "
    "get_Mahalanobis_score): the ensemble score is not differentiable"
)
_F64 = "the ensemble's regression weights and score are float64 by design (sklearn LR)"


def _logits(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, B, D, dtype=dtype, device=device) * 2,)


def _fit_score_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, 2 * B, D, dtype=dtype, device=device),
        randn(g, B, D, dtype=dtype, device=device),
    )


def _fit_then_score(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    bank, queries = inputs
    labels = torch.arange(bank.shape[0], device=bank.device) % 2
    return unit.fit(bank, labels).score(queries)


def _identity_layers(t: torch.Tensor) -> list[torch.Tensor]:
    return [t, 2.0 * t]


def _ensemble_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    bank, queries = inputs
    labels = torch.arange(bank.shape[0], device=bank.device) % 2
    unit.fit(_identity_layers(bank), labels).tune(_identity_layers, bank)
    return unit.score_inputs(_identity_layers, queries)


def _make(name: str, **hyper: Any) -> Any:
    def make(dtype: torch.dtype, device: torch.device) -> Any:
        return cls(name)(**hyper)

    return make


CONTRACTS: dict[str, Contract] = {
    "MaxSoftmax": Contract(
        make=_make("MaxSoftmax"),
        inputs=_logits,
        call=call_module,
        repr_has=("MaxSoftmax",),
        grad_args=(0,),
        half_dtype=None,
    ),
    "MaxLogit": Contract(
        make=_make("MaxLogit"),
        inputs=_logits,
        call=call_module,
        repr_has=("MaxLogit",),
        grad_args=(0,),
        half_dtype=None,
    ),
    "EnergyScore": Contract(
        make=_make("EnergyScore", temperature=2.0),
        inputs=_logits,
        call=call_module,
        repr_has=("temperature=2.0",),
        grad_args=(0,),
        half_dtype=None,
    ),
    "KNNDistance": Contract(
        make=_make("KNNDistance", k=2),
        inputs=_fit_score_inputs,
        call=_fit_then_score,
        repr_has=("k=2",),
        half_dtype=None,
        not_applicable={"grad": _DETACHED, "grad_flow": _DETACHED},
    ),
    "Mahalanobis": Contract(
        make=_make("Mahalanobis", num_classes=2),
        inputs=_fit_score_inputs,
        call=_fit_then_score,
        repr_has=("num_classes=2",),
        grad_args=(1,),
        half_dtype=None,
    ),
    "MahalanobisEnsemble": Contract(
        make=_make("MahalanobisEnsemble", epsilons=(0.0,), validation="none", input_std=0.5),
        inputs=_fit_score_inputs,
        call=_ensemble_call,
        repr_has=("epsilons=(0.0,)", "validation='none'", "input_std=0.5"),
        not_applicable={
            "grad": _ENSEMBLE_NO_GRAD,
            "grad_flow": _ENSEMBLE_NO_GRAD,
            "dtype": _F64,
            "half": _F64,
        },
    ),
}
