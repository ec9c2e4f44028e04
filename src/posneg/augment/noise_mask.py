"""Policy-gradient-driven noise mask: a Beta mask policy trained with REINFORCE on the batch loss.

Yavuz, Yang. Policy Gradient-Driven Noise Mask. arXiv 2406.14568 (2024). Transcribed from the
official code, ogrenenmakine/Policy-Gradient-Driven-Noise-Mask at commit ece96ae:
``_policy_gradient/create_model.py`` (``MaskGenerator``) and
``_policy_gradient/train_one_epoch.py`` (the objective).

The policy maps an image to per-cell log-concentrations of a ``G x G`` grid (``G^d`` cells for
``d``-dimensional inputs), smoothed with running bases::

    a = 0.9 a_base + 0.1 head_alpha(x)          b = 0.9 b_base + 0.1 head_beta(x)
    a_base <- 0.99 a_base + 0.01 mean_batch(head_alpha(x)).detach()   (likewise b_base)

A mask ``m ~ Beta(exp(a), exp(b))`` per cell is drawn without reparameterisation, nearest-
upsampled to the input size, Gaussian-blurred, and multiplies the input. The objective as coded::

    l_b  = log sum_cells exp(log Beta(m_b; exp(a_b), exp(b_b)))       (a log-sum-exp, not a sum)
    loss = mean_b(l_b) * CE_mean                                      (one backward, both nets)

so the classifier's gradient is ``mean(l) grad CE`` and the policy's is ``CE grad mean(l)``
(REINFORCE with the batch CE as the cost, no baseline). ``reward="per_sample"`` (not in the code)
uses ``mean_b(l_b CE_b)`` instead; it equals the coded loss when every CE_b is equal.
The code computes ``log(sum(exp(logp)))``; we use ``logsumexp`` (the same value, no overflow).
Works for images (B, C, H, W) and sequences (B, C, L) (a 1-D grid of G cells).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng

__all__ = [
    "CITATION",
    "NoiseMaskDraw",
    "NoiseMaskPolicy",
    "blur_mask",
    "gaussian_kernel1d",
    "noise_mask_log_prob",
    "noise_mask_loss",
    "sample_noise_mask",
    "smooth_concentrations",
]

CITATION = """
@article{yavuz2024noisemask,
  title   = {Policy Gradient-Driven Noise Mask},
  author  = {Yavuz, Mehmet Can and Yang, Yang},
  journal = {arXiv preprint arXiv:2406.14568},
  year    = {2024}
}
"""

Reward = Literal["batch", "per_sample"]


def gaussian_kernel1d(kernel_size: int, sigma: float, *, dtype: torch.dtype) -> torch.Tensor:
    """torchvision's ``_get_gaussian_kernel1d``: ``exp(-x^2 / 2 sigma^2)`` on
    ``x = -(k-1)/2 .. (k-1)/2``, normalised to sum 1."""
    half = (kernel_size - 1) * 0.5
    xs = torch.linspace(-half, half, kernel_size, dtype=dtype)
    pdf = torch.exp(-0.5 * (xs / sigma) ** 2)
    return pdf / pdf.sum()


def blur_mask(mask: torch.Tensor, *, kernel_size: int = 13, sigma: float = 6.0) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (torchvision ``gaussian_blur``) of a
    (B, 1, H, W) or (B, 1, L) mask; a constant mask stays constant."""
    fn = "blur_mask"
    k = _checks.check_int(fn, "kernel_size", kernel_size, min_value=1)
    if k % 2 == 0:
        raise ValueError(f"{fn}: kernel_size must be odd; got {k}")
    s = _checks.check_positive(fn, "sigma", sigma)
    ker = gaussian_kernel1d(k, s, dtype=mask.dtype).to(mask.device)
    pad = k // 2
    if mask.dim() == 3:
        out = F.pad(mask, (pad, pad), mode="reflect")
        return F.conv1d(out, ker.view(1, 1, k))
    out = F.pad(mask, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, ker.view(1, 1, 1, k))
    return F.conv2d(out, ker.view(1, 1, k, 1))


def smooth_concentrations(
    head_alpha: torch.Tensor,
    head_beta: torch.Tensor,
    base_alpha: torch.Tensor,
    base_beta: torch.Tensor,
    *,
    decay: float = 0.9,
    base_momentum: float = 0.99,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``MaskGenerator.forward``'s smoothing: (a, b, new a_base, new b_base).

    ``a = decay a_base + (1 - decay) head_alpha``; ``a_base' = m a_base + (1 - m)
    mean_batch(head_alpha).detach()`` with ``m = base_momentum``; heads (B, cells), bases
    (1, cells).
    """
    a = decay * base_alpha + (1.0 - decay) * head_alpha
    b = decay * base_beta + (1.0 - decay) * head_beta
    new_a = base_momentum * base_alpha + (1.0 - base_momentum) * head_alpha.detach().mean(0, True)
    new_b = base_momentum * base_beta + (1.0 - base_momentum) * head_beta.detach().mean(0, True)
    return a, b, new_a, new_b


def noise_mask_log_prob(
    cells: torch.Tensor, log_alpha: torch.Tensor, log_beta: torch.Tensor
) -> torch.Tensor:
    """``l_b = logsumexp_cells log Beta(cells_b; exp(log_alpha_b), exp(log_beta_b))``, (B,)."""
    dist = torch.distributions.Beta(log_alpha.exp(), log_beta.exp(), validate_args=False)
    return torch.logsumexp(dist.log_prob(cells), dim=1)


def sample_noise_mask(
    log_alpha: torch.Tensor,
    log_beta: torch.Tensor,
    *,
    size: tuple[int, ...],
    grid: int,
    kernel_size: int = 13,
    sigma: float = 6.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the cells ``m ~ Beta(exp(a), exp(b))`` (no gradient) and build the input mask.

    Args:
        log_alpha, log_beta: (B, G^d) log-concentrations (d = len(size)).
        size: the input's spatial size, (H, W) or (L,).
        grid: G.
        kernel_size, sigma: of the blur (13, 6 at 224 px in the code).
        generator: the Beta draws.

    Returns:
        ``(mask, cells)``: mask (B, 1, *size) in (0, 1), cells (B, G^d).
    """
    fn = "sample_noise_mask"
    g = _checks.check_int(fn, "grid", grid, min_value=1)
    d = len(size)
    if d not in (1, 2) or log_alpha.shape != log_beta.shape or log_alpha.shape[-1] != g**d:
        raise ValueError(
            f"{fn}: log_alpha and log_beta must be (B, grid^{d}) = (B, {g**d}) for size {size}; "
            f"got {tuple(log_alpha.shape)} and {tuple(log_beta.shape)}"
        )
    with torch.no_grad():
        cells = _rng.beta(
            log_alpha.detach().exp(),
            log_beta.detach().exp(),
            tuple(log_alpha.shape),
            device=log_alpha.device,
            dtype=log_alpha.dtype,
            generator=generator,
        )
        cells = cells.clamp(1e-6, 1.0 - 1e-6)
        grid_shape = (g,) * d
        m = cells.reshape(-1, 1, *grid_shape)
        if grid_shape != tuple(size):
            m = F.interpolate(m, size=tuple(size), mode="nearest")
        mask = blur_mask(m, kernel_size=kernel_size, sigma=sigma)
    return mask, cells


def noise_mask_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    log_prob: torch.Tensor,
    *,
    reward: Reward = "batch",
) -> torch.Tensor:
    """The code's objective ``mean_b(l_b) * CE_mean`` (``reward="batch"``) or the per-sample
    REINFORCE ``mean_b(l_b * CE_b)`` (``reward="per_sample"``).

    Args:
        logits: (B, K) of the masked inputs. targets: (B,) class ids. log_prob: (B,) l_b.
    """
    fn = "noise_mask_loss"
    if reward not in ("batch", "per_sample"):
        raise ValueError(f"{fn}: reward must be 'batch' or 'per_sample'; got {reward!r}")
    if log_prob.shape != (logits.shape[0],):
        raise ValueError(
            f"{fn}: log_prob must be (B,) = ({logits.shape[0]},); got {tuple(log_prob.shape)}"
        )
    if reward == "batch":
        return log_prob.mean() * F.cross_entropy(logits, targets)
    return (log_prob * F.cross_entropy(logits, targets, reduction="none")).mean()


@dataclass(frozen=True)
class NoiseMaskDraw:
    """One masking of a batch: ``x`` masked, the mask, the cells, and l (B,) for the loss."""

    x: torch.Tensor
    mask: torch.Tensor
    cells: torch.Tensor
    log_prob: torch.Tensor


def _head(width: int, cells: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, cells),
    )


class NoiseMaskPolicy(nn.Module):
    """The mask policy (``MaskGenerator``) as a transform: ``policy(x, generator=g)`` masks x.

    A small conv feature extractor (two conv-BN-ReLU blocks and a global average pool, standing
    in for the code's random-init timm ``resnet10t``), two heads Linear-BN-ReLU x2-Linear to
    ``G^d`` log-concentrations, and the running bases (buffers, U(0, 1) at init). In training
    mode a call updates the bases; in eval mode the mask is drawn from the bases alone
    (``Beta(exp(a_base), exp(b_base))``, image-independent, as ``evaluate.py``).

    Args:
        in_channels: C. ndim: 2 for images, 1 for sequences.
        grid: G (64 in the code at 224 px). width: features (512 in the code).
        kernel_size, sigma: of the blur.
        decay: the smoothing weight of the bases (0.9); base_momentum: their EMA (0.99).
        generator: initialises the weights and the bases.

    Example:
        >>> pol = NoiseMaskPolicy(1, grid=4, kernel_size=3, sigma=1.0,
        ...                       generator=torch.Generator().manual_seed(0))
        >>> pol(torch.rand(2, 1, 8, 8), generator=torch.Generator().manual_seed(1)).x.shape
        torch.Size([2, 1, 8, 8])
    """

    base_alpha: torch.Tensor
    base_beta: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        *,
        ndim: int = 2,
        grid: int = 8,
        width: int = 32,
        kernel_size: int = 5,
        sigma: float = 2.0,
        decay: float = 0.9,
        base_momentum: float = 0.99,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        fn = "NoiseMaskPolicy"
        c = _checks.check_int(fn, "in_channels", in_channels, min_value=1)
        if ndim not in (1, 2):
            raise ValueError(f"{fn}: ndim must be 1 or 2; got {ndim!r}")
        self.ndim = ndim
        self.grid = _checks.check_int(fn, "grid", grid, min_value=1)
        self.width = _checks.check_int(fn, "width", width, min_value=1)
        self.kernel_size = _checks.check_int(fn, "kernel_size", kernel_size, min_value=1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"{fn}: kernel_size must be odd; got {kernel_size}")
        self.sigma = _checks.check_positive(fn, "sigma", sigma)
        self.decay = _checks.check_range(fn, "decay", decay, 0.0, 1.0)
        self.base_momentum = _checks.check_range(fn, "base_momentum", base_momentum, 0.0, 1.0)
        conv = nn.Conv2d if ndim == 2 else nn.Conv1d
        bn = nn.BatchNorm2d if ndim == 2 else nn.BatchNorm1d
        pool = nn.AdaptiveAvgPool2d(1) if ndim == 2 else nn.AdaptiveAvgPool1d(1)
        w = self.width
        self.features = nn.Sequential(
            conv(c, w // 2 or 1, 3, stride=2, padding=1, bias=False),
            bn(w // 2 or 1),
            nn.ReLU(),
            conv(w // 2 or 1, w, 3, stride=2, padding=1, bias=False),
            bn(w),
            nn.ReLU(),
            pool,
            nn.Flatten(),
        )
        cells = self.grid**ndim
        self.head_alpha = _head(w, cells)
        self.head_beta = _head(w, cells)
        if generator is not None:  # torch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn here
            with torch.no_grad():
                for mod in self.modules():
                    if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                        bound = 1.0 / math.sqrt(mod.weight[0].numel())
                        for p in (mod.weight, mod.bias):
                            if p is not None:
                                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)
        self.register_buffer("base_alpha", torch.rand(1, cells, generator=generator))
        self.register_buffer("base_beta", torch.rand(1, cells, generator=generator))

    def concentrations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log alpha, log beta) (B, G^d) of x; updates the bases in training mode."""
        if not self.training:
            b = x.shape[0]
            return self.base_alpha.expand(b, -1), self.base_beta.expand(b, -1)
        h = self.features(x)
        a, b_, na, nb = smooth_concentrations(
            self.head_alpha(h),
            self.head_beta(h),
            self.base_alpha,
            self.base_beta,
            decay=self.decay,
            base_momentum=self.base_momentum,
        )
        self.base_alpha.copy_(na)
        self.base_beta.copy_(nb)
        return a, b_

    def forward(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> NoiseMaskDraw:
        """Mask a batch x (B, C, H, W) or (B, C, L): returns the masked x and l (B,)."""
        fn = "NoiseMaskPolicy"
        x = _checks.check_float(fn, "x", x)
        if x.dim() != self.ndim + 2:
            raise ValueError(
                f"{fn}: x must have {self.ndim + 2} dims (ndim={self.ndim}); got {tuple(x.shape)}"
            )
        log_a, log_b = self.concentrations(x)
        mask, cells = sample_noise_mask(
            log_a,
            log_b,
            size=tuple(x.shape[2:]),
            grid=self.grid,
            kernel_size=self.kernel_size,
            sigma=self.sigma,
            generator=generator,
        )
        ell = noise_mask_log_prob(cells, log_a, log_b)
        return NoiseMaskDraw(x=x * mask.to(x.dtype), mask=mask, cells=cells, log_prob=ell)

    def extra_repr(self) -> str:
        return (
            f"ndim={self.ndim}, grid={self.grid}, width={self.width}, "
            f"kernel_size={self.kernel_size}, sigma={self.sigma}, decay={self.decay}, "
            f"base_momentum={self.base_momentum}"
        )
