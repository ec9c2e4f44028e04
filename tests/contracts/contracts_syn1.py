"""Contract entries of the GDA sampler, the bGMM gap simulation and CoDSA (posneg.synthetic).

``GDAMixSampler`` is a DataLoader batch sampler (integer index batches, drawn from the generator
it holds, like ``BalancedBatchSampler``). ``BGMMGapSimulation`` is a float64 Monte-Carlo
simulation on the CPU with no tensor input. ``CoDSA`` allocates a budget and calls a conditional
generator: here a Gaussian stand-in ``means[region] + noise`` whose ``means`` is the
differentiable input, so gradients and dtypes follow the generator's output through CoDSA.
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import Contract, Inputs, cls, randn

_INDEX_BATCHES = "yields integer index batches"


def _sampler_make(dtype: torch.dtype, device: torch.device) -> Any:
    return cls("GDAMixSampler")(range(10), range(10, 30), 6, syn_fraction=0.5, num_batches=4)


def _sampler_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    unit.generator = generator  # the sampler's documented source of draws for each epoch
    return torch.tensor(list(unit))


def _bgmm_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(8, 2, generator=generator)


def _codsa_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    regions = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2], device=device)
    return (regions, randn(g, 3, 2, dtype=dtype, device=device))


def _codsa_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    regions, means = inputs

    def sample(cond: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(len(cond), means.shape[1], generator=g, device=means.device)
        return means[cond] + noise.to(means.dtype)

    return unit(regions, sample, generator=generator)


CONTRACTS: dict[str, Contract] = {
    "GDAMixSampler": Contract(
        make=_sampler_make,
        inputs=lambda dtype, device, g: (),
        call=_sampler_call,
        repr_has=("batch_size=6", "syn_fraction=0.5", "num_batches=4"),
        draws=True,
        not_applicable={
            "grad": f"{_INDEX_BATCHES}: nothing to differentiate",
            "grad_flow": f"{_INDEX_BATCHES}: nothing to differentiate",
            "dtype": f"{_INDEX_BATCHES}: no floating input or output",
            "half": f"{_INDEX_BATCHES}: no floating input or output",
            "cuda": "a DataLoader batch sampler: draws on the host with a CPU generator",
        },
    ),
    "BGMMGapSimulation": Contract(
        make=lambda dtype, device: cls("BGMMGapSimulation")(
            gammas=(0, 2), sigma=0.5, repeats=3, test_size=40
        ),
        inputs=lambda dtype, device, g: (),
        call=_bgmm_call,
        repr_has=("gammas=(0.0, 2.0)", "sigma=0.5", "repeats=3", "test_size=40"),
        draws=True,
        not_applicable={
            "grad": "a Monte-Carlo simulation of 0-1 and NLL gaps: no tensor input",
            "grad_flow": "a Monte-Carlo simulation of 0-1 and NLL gaps: no tensor input",
            "dtype": "always float64 (the official NumPy simulation's precision): no tensor input",
            "half": "always float64 (the official NumPy simulation's precision): no tensor input",
            "cuda": "a CPU simulation drawn from a CPU generator (no device argument)",
        },
    ),
    "CoDSA": Contract(
        make=lambda dtype, device: cls("CoDSA")(ratio=0.75, rule="balance", num_regions=3),
        inputs=_codsa_inputs,
        call=_codsa_call,
        repr_has=("ratio=0.75", "rule='balance'", "num_regions=3"),
        draws=True,
        grad_args=(1,),
        half_dtype=None,  # the samples are the generator's, in its dtype
    ),
}
