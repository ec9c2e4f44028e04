"""Contract entries of MADAug's policy network and the invariance-constrained MH sampler (pol2).

Both are augmentation units: their outputs are augmented inputs drawn from the generator, built
from piecewise-constant image ops or (for the policy) under ``no_grad`` exploit sampling, so the
gradient checks do not apply (MADAug's policy is trained through ``explore`` and
``bilevel_validation_loss``, tested in tests/augment/test_madaug.py). Inputs are (B, 1, 16)
sequences (the 1-D op space) so that half inputs stay cheap on CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from contract_kit import Contract, Inputs, cls, seeded


class _FixedLogits(nn.Module):
    """A parameter-free classifier (its logits are the first 3 steps): dtype follows the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3]


def _sequences(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    x = torch.randn(4, 1, 16, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    feats = torch.randn(4, 6, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    return (x, feats)


def _with_labels(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    x = torch.randn(4, 1, 16, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    y = torch.randint(0, 3, (4,), generator=g).to(device)
    return (_FixedLogits(), x, y)


def _make_policy(dtype: torch.dtype, device: torch.device) -> Any:
    return seeded(lambda: cls("MADAugPolicy")(6, kind="sequence", temperature=2.0, k_ops=3)).to(
        device
    )


def _make_sampler(dtype: torch.dtype, device: torch.device) -> Any:
    return cls("InvarianceSampler")(kind="sequence", mh_steps=3, lr=0.01, margin=0.3)


def _call_drawing(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


_NO_GRAD = (
    "an augmentation unit: its output is drawn ops applied to the input (exploit sampling runs "
    "under no_grad; the policy learns through explore_mix / bilevel_validation_loss)"
)

CONTRACTS: dict[str, Contract] = {
    "MADAugPolicy": Contract(
        make=_make_policy,
        inputs=_sequences,
        call=_call_drawing,
        repr_has=("kind='sequence'", "temperature=2.0", "k_ops=3"),
        draws=True,
        half_dtype=None,
        not_applicable={"grad": _NO_GRAD, "grad_flow": _NO_GRAD},
    ),
    "InvarianceSampler": Contract(
        make=_make_sampler,
        inputs=_with_labels,
        call=_call_drawing,
        repr_has=("kind='sequence'", "mh_steps=3", "margin=0.3"),
        draws=True,
        half_dtype=None,
        not_applicable={"grad": _NO_GRAD, "grad_flow": _NO_GRAD},
    ),
}
