"""The non-finite contract (``posneg.losses`` docstring, issue 22): NaN in, never a finite out.

Every registered loss (and the mining objectives and negative generators, which feed losses)
is run on the contract suite's inputs with one entry set to NaN or inf: it must raise a
``ValueError`` that names NaN/inf, or return a non-finite value. A finite result computed from
a non-finite input would hide the problem.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import test_contracts as tc
from posneg import registry

_FAMILIES = ("losses", "negatives", "mining")
_UNITS = [
    t.name
    for t in registry.available()
    if t.family in _FAMILIES and t.name in tc.CONTRACTS and not t.name.endswith("Sampler")
]
_RAISES = {
    "SupConLoss",
    "CACRLoss",
    "AMCLLoss",
    "FocalLoss",
    "DiceLoss",
    "MemoryQueue",
    "FixMatchLoss",
    "PCLSRDualContrastiveLoss",
    "CETLoss",
}


def _run_with(name: str, bad: float) -> Any:
    contract = tc.CONTRACTS[name]
    dev = torch.device("cpu")
    unit = contract.make(torch.float32, dev)
    inputs = list(contract.inputs(torch.float32, dev, torch.Generator().manual_seed(0)))
    i = next(
        j for j, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()
    )
    x = inputs[i].clone()
    x.view(-1)[0] = bad
    inputs[i] = x
    gen = torch.Generator().manual_seed(1) if contract.draws else None
    return contract.call(unit, tuple(inputs), gen)


def test_the_contract_covers_the_losses() -> None:
    assert {"InfoNCELoss", "DCLLoss", "HCLLoss", "SupConLoss", "FocalLoss"} <= set(_UNITS)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", _UNITS)
def test_non_finite_input_never_gives_a_finite_output(name: str, bad: float) -> None:
    try:
        out = _run_with(name, bad)
    except ValueError as err:
        assert "NaN or inf" in str(err), err
        assert name in _RAISES, f"{name} raises: add it to the losses docstring's list"
        return
    assert name not in _RAISES, f"{name} no longer raises on non-finite input"
    floats = [t for t in tc._tensors(out) if t.is_floating_point()]
    assert floats and not all(bool(torch.isfinite(t).all()) for t in floats)
