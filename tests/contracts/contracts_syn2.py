"""Contract entries of From Fake to Real, Leaving Reality and ASPIRE (posneg.synthetic).

- ``FakeToRealTrainer``: inputs are a synthetic and a real ``(B, D)`` set with labels; the call
  trains a seeded ``nn.Linear(D, 2)`` (built in the inputs' dtype, without touching the global
  RNG) through both stages and returns its logits on the real set. It draws the mini-batch
  order.
- ``LeavingRealityAugmentation``: ``(B, D)`` images and labels; the call's generator callable
  draws noise from the same generator (on CPU, then moved), and the output is real ∪ generated.
- ``ASPIRESelector``: the call runs the flip test with a classifier reading the first two
  columns and an edit that swaps them, then selects; it returns the kept edited images, their
  labels and sources (the ranking holds Python floats, left out of the tensor checks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from contract_kit import B, Contract, D, Inputs, loss, randn, seeded

_TRAINING = (
    "a training loop: the output depends on the inputs through optimizer steps, which "
    "autograd does not follow"
)


def _ffr_make(dtype: torch.dtype, device: torch.device) -> Any:
    from posneg.synthetic.fake_to_real import FakeToRealTrainer

    return FakeToRealTrainer(
        pretrain_epochs=2, finetune_epochs=2, batch_size=3, pretrain_lr=0.05, finetune_lr=0.02
    )


def _ffr_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    y = torch.arange(B, device=device) % 2
    return (
        randn(g, B, D, dtype=dtype, device=device),
        y,
        randn(g, B, D, dtype=dtype, device=device),
        y.flip(0),
    )


def _ffr_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    xs, ys, xr, yr = inputs
    model: nn.Module = seeded(lambda: nn.Linear(D, 2)).to(dtype=xs.dtype, device=xs.device)
    unit.fit(model, synthetic_x=xs, synthetic_y=ys, real_x=xr, real_y=yr, generator=generator)
    with torch.no_grad():
        return model(xr)


def _labelled(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, B, D, dtype=dtype, device=device), torch.arange(B, device=device) % 3)


def _generate(
    *,
    images: torch.Tensor,
    labels: torch.Tensor,
    prompts: list[str],
    generator: torch.Generator | None,
) -> torch.Tensor:
    noise = torch.rand(images.shape, generator=generator, dtype=torch.float64)
    return 0.5 * images + noise.to(dtype=images.dtype, device=images.device)


def _lr_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    gen = None if generator is None else torch.Generator().manual_seed(generator.initial_seed())
    out = unit(*inputs, generate=_generate, generator=gen)
    return out.images, out.labels


def _aspire_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    from posneg.synthetic.aspire import flip_test

    x = inputs[0]
    y = x[:, :2].argmax(1).detach()
    feats = ["red patch", "red patches", "frame"]
    occurs = torch.ones(x.shape[0], 3, dtype=torch.bool, device=x.device)
    res = flip_test(lambda z: z[:, :2], x, y, features=feats, occurs=occurs,
                    edit=lambda z, f: torch.cat([z[:, 1:2], z[:, :1], z[:, 2:]], 1))  # fmt: skip
    gen = None if generator is None else torch.Generator().manual_seed(generator.initial_seed())
    sel = unit(res, y, features=feats, num_classes=2, generator=gen)
    return sel.images, sel.labels, sel.source


def _aspire_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    x = torch.randn(8, D, generator=g, dtype=torch.float64)
    x[:, 0] += torch.where(torch.arange(8) % 2 == 0, 3.0, -3.0)  # no ties between the logits
    return (x.to(dtype=dtype, device=device),)


CONTRACTS: dict[str, Contract] = {
    "FakeToRealTrainer": Contract(
        make=_ffr_make,
        inputs=_ffr_inputs,
        call=_ffr_call,
        repr_has=("pretrain_epochs=2", "batch_size=3", "pretrain_lr=0.05", "finetune_lr=0.02"),
        draws=True,
        half_dtype=None,  # the logits of a model built in the inputs' dtype
        not_applicable={"grad": _TRAINING, "grad_flow": _TRAINING},
    ),
    "LeavingRealityAugmentation": Contract(
        make=loss("LeavingRealityAugmentation", ratio=1.5, class_names=("a", "b", "c")),
        inputs=_labelled,
        call=_lr_call,
        repr_has=("ratio=1.5", "class_names=('a', 'b', 'c')"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,  # real rows are the inputs; generated rows are cast to their dtype
    ),
    "ASPIRESelector": Contract(
        make=loss("ASPIRESelector", threshold=0.6, first_cap=2, other_cap=1, class_cap=3),
        inputs=_aspire_inputs,
        call=_aspire_call,
        repr_has=("threshold=0.6", "first_cap=2", "other_cap=1", "class_cap=3"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,  # edited images keep the inputs' dtype
    ),
}
