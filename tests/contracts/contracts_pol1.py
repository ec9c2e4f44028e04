"""Contract entries of AdAutoMix (``posneg.mixing.adautomix``) and the policy-gradient noise
mask (``posneg.augment.noise_mask``).

Both units own parameters drawn from a fixed generator at construction (the global RNG
untouched), so two ``make`` calls build equal units; the parameters follow float32/float64
inputs. AdAutoMix's step needs a classifier, a teacher and the teacher's feature stage: here
fixed parameter-free functions of the input (a cosine-weighted linear map and a 2x2 average
pool), so the contract exercises the generator, both mixes and both objectives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from contract_kit import B, Contract, Inputs, cls, randn


def _make(name: str, *args: Any, **hyper: Any) -> Callable[[torch.dtype, torch.device], nn.Module]:
    def make(dtype: torch.dtype, device: torch.device) -> nn.Module:
        module: nn.Module = cls(name)(*args, generator=torch.Generator().manual_seed(0), **hyper)
        return module.to(device=device, dtype=dtype if dtype == torch.float64 else torch.float32)

    return make


def _images(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """B=4 images (4, 2, 6, 6) with class ids in [0, 3)."""
    return (
        randn(g, B, 2, 6, 6, dtype=dtype, device=device),
        torch.tensor([0, 1, 2, 1], device=device),
    )


def _logits(x: torch.Tensor) -> torch.Tensor:
    w = torch.cos(torch.arange(x[0].numel() * 3, device=x.device, dtype=x.dtype)).reshape(-1, 3)
    return x.flatten(1) @ w


def _call_adautomix(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    x, y = inputs
    out = unit(
        x, y, classifier=_logits, teacher=_logits, teacher_features=lambda t: F.avg_pool2d(t, 2),
        adversarial=True, num_classes=3, generator=generator,
    )  # fmt: skip
    return (out.total, out.x_mb, out.x_bb)


def _call_noise_mask(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    draw = unit(inputs[0], generator=generator)
    return (draw.x, draw.log_prob)


_NOT_REPARAM = (
    "the mask is a non-reparameterised Beta draw (the code's .sample()) whose concentrations "
    "depend on the input through the policy: finite differences see another draw"
)

CONTRACTS: dict[str, Contract] = {
    "AdAutoMix": Contract(
        make=_make("AdAutoMix", 2, alpha=0.5, lam_margin=0.0, beta=0.4, mixup_ratio=0.3),
        inputs=_images,
        call=_call_adautomix,
        repr_has=("alpha=0.5", "lam_margin=0.0", "beta=0.4", "mixup_ratio=0.3", "in_channels=2"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,
        not_applicable={
            "grad": "the classifier's masks M_bb are detached as in the code (a stop-gradient), "
            "so the analytic gradient in x omits their path and finite differences do not"
        },
    ),
    "NoiseMaskPolicy": Contract(
        make=_make("NoiseMaskPolicy", 2, grid=3, width=4, kernel_size=3, sigma=1.0, decay=0.8),
        inputs=_images,
        call=_call_noise_mask,
        repr_has=("grid=3", "width=4", "kernel_size=3", "sigma=1.0", "decay=0.8"),
        draws=True,
        grad_args=(0,),
        not_applicable={
            "grad": _NOT_REPARAM,
            "half": "a conv/BatchNorm policy network kept in float32; its log-densities are "
            "float32 while the masked batch keeps the input's dtype",
        },
    ),
}
