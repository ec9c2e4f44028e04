"""PCL-SR: practical contrastive learning for single-image super-resolution.

Wu, Jiang, Liu. *A Practical Contrastive Learning Framework for Single-Image Super-Resolution.*
IEEE TNNLS 2023, arXiv 2111.13924. Official code: Aitical/PCL-SISR (commit ba4cbb7):
``src/loss/adversarial.py`` (``Adversarial.forward``, ``infoNCE``, ``nce``,
``contrastive_D_loss``), ``src/loss/discriminator.py`` (``Discriminator``, ``filter_wavelet``),
``src/trainer.py`` (positives, negatives) and ``src/data/div2k.py`` (``RandomDegrad``).

The pieces, each a pure function with a thin module:

- :func:`haar_highpass`: the embedding network's input, the level-1 Haar detail sub-bands
  (LH, HL, HH; the LL band is dropped) concatenated on channels.
- :class:`PCLSREmbedding`: the discriminator trunk on that input (conv3x3 + BN blocks, LeakyReLU
  0.2), whose block ``cl_layer`` gives the contrastive feature, and whose patch head gives the
  logits of the D-side loss.
- :func:`sample_pcl_sr_params` / :func:`apply_pcl_sr_views` (:class:`PCLSRViews`): the positives
  (HR plus sharpened copies, kornia's ``sharpness`` with factors U(0.5, 3.0)) and the hard
  negatives (the bicubic-upsampled LR plus Gaussian-blurred copies of the HR, kernel sizes and
  sigmas drawn once per call as in ``RandomDegrad``).
- :func:`pcl_sr_loss` (:class:`PCLSRLoss`): the generator-side contrastive loss.
- :func:`pcl_sr_dual_contrastive_loss` (:class:`PCLSRDualContrastiveLoss`): the D-side loss.

**Where posneg differs from the released code.** In ``Adversarial.forward`` the SR features are
computed inside ``torch.no_grad()``, so the released contrastive term sends no gradient to the SR
network (it only trains the embedding network, through the D-side loss). The paper's method
needs the gradient; posneg follows the paper by default and ``detach_sr_features=True``
reproduces the released behaviour (gradient to the SR image exactly 0).

**Released quirk kept configurable.** With ``--before_relu`` the released
``Discriminator.forward(return_features=True)`` appends each block's BN output and then runs
``LeakyReLU(inplace=True)`` on that very tensor, so the stored "pre-activation" features are in
fact post-activation. :class:`PCLSREmbedding` computes what the flag names (``before_relu=True``,
the card's configuration); ``before_relu=False`` gives what the released code effectively uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = [
    "PCLSRDualContrastiveLoss",
    "PCLSREmbedding",
    "PCLSRLoss",
    "PCLSRParams",
    "PCLSRViews",
    "PCLSRViewsOutput",
    "apply_pcl_sr_views",
    "gaussian_blur",
    "haar_highpass",
    "pcl_sr_dual_contrastive_loss",
    "pcl_sr_loss",
    "pcl_sr_similarity",
    "quantize",
    "sample_pcl_sr_params",
    "sharpness",
]

CITATION = """
@article{wu2023pclsr,
  title   = {A Practical Contrastive Learning Framework for Single-Image Super-Resolution},
  author  = {Wu, Gang and Jiang, Junjun and Liu, Xianming},
  journal = {IEEE Transactions on Neural Networks and Learning Systems},
  year    = {2023},
  note    = {arXiv:2111.13924}
}
"""

Embed = Callable[[torch.Tensor], "torch.Tensor | Sequence[torch.Tensor]"]


def _check_images(fn: str, name: str, x: object) -> torch.Tensor:
    t = _checks.check_float(fn, name, x)
    if t.dim() != 4:
        raise ValueError(f"{fn}: {name} must have shape (B, C, H, W); got {tuple(t.shape)}")
    return t


# --------------------------------------------------------------------------- kernels


def haar_highpass(x: torch.Tensor) -> torch.Tensor:
    """Level-1 orthonormal Haar detail sub-bands of ``x``, LL dropped: ``cat([LH, HL, HH], 1)``.

    As ``Discriminator.filter_wavelet`` (pytorch_wavelets ``DWTForward(J=1, wave="haar")``,
    ``cs="cat"``). With ``a, b, c, d = x[2i, 2j], x[2i, 2j+1], x[2i+1, 2j], x[2i+1, 2j+1]``::

        LH = (a + b - c - d) / 2    (low-pass along width, high-pass along height)
        HL = (a - b + c - d) / 2    (high-pass along width, low-pass along height)
        HH = (a - b - c + d) / 2

    Channel order is band-major, as ``torch.cat((LH, HL, HH), 1)``: the C channels of LH, then
    of HL, then of HH. A constant image gives all zeros.

    Args:
        x: (B, C, H, W) with H and W even.

    Returns:
        (B, 3C, H/2, W/2).

    Raises:
        TypeError: non-floating input.
        ValueError: not 4-D, or H or W odd.

    Example:
        >>> import torch
        >>> haar_highpass(torch.ones(1, 3, 4, 4)).abs().max().item()
        0.0
    """
    fn = "haar_highpass"
    _check_images(fn, "x", x)
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or h == 0 or w == 0:
        raise ValueError(f"haar_highpass: x must have even, non-zero H and W; got {tuple(x.shape)}")
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    lh = (a + b - c - d) * 0.5
    hl = (a - b + c - d) * 0.5
    hh = (a - b - c + d) * 0.5
    return torch.cat((lh, hl, hh), dim=1)


def quantize(x: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """Clamp to [0, 1] and round to ``levels`` steps (``utility.quantize`` with rgb_range 1)."""
    return x.mul(levels).clamp(0, levels).round().div(levels)


def sharpness(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Sharpness adjustment as kornia's ``enhance.sharpness`` (PIL ``ImageEnhance.Sharpness``).

    ``degenerate = clamp(conv(x, [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13), 0, 1)`` on the interior,
    the border pixels copied from ``x``; then ``out = degenerate + factor * (x - degenerate)``,
    clamped to [0, 1] unless ``0 <= factor <= 1``; ``factor == 1`` returns ``x`` exactly and
    ``factor == 0`` returns ``degenerate``. Factors below 1 blur, above 1 sharpen.

    Args:
        x: (B, C, H, W) images in [0, 1].
        factor: a number or a (B,) tensor, one factor per image.

    Returns:
        (B, C, H, W).

    Example:
        >>> import torch
        >>> x = torch.rand(2, 3, 8, 8)
        >>> torch.equal(sharpness(x, 1.0), x)
        True
    """
    fn = "sharpness"
    _check_images(fn, "x", x)
    f = torch.as_tensor(factor, dtype=x.dtype, device=x.device)
    if f.dim() == 0:
        f = f.expand(x.shape[0])
    if f.shape != (x.shape[0],):
        raise ValueError(
            f"sharpness: factor must be a number or shape ({x.shape[0]},); got {tuple(f.shape)}"
        )
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    degenerate = x.clone()
    if x.shape[-2] > 2 and x.shape[-1] > 2:
        inner = F.conv2d(x, kernel, groups=c).clamp(0.0, 1.0)
        degenerate[..., 1:-1, 1:-1] = inner
    fv = f.view(-1, 1, 1, 1)
    out = degenerate + (x - degenerate) * fv
    clamp = (fv < 0) | (fv > 1)
    out = torch.where(clamp, out.clamp(0.0, 1.0), out)
    out = torch.where(fv == 0, degenerate, out)
    return torch.where(fv == 1, x, out)


def _gaussian_1d(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    t = torch.arange(size, dtype=like.dtype, device=like.device) - size // 2
    g = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def gaussian_blur(
    x: torch.Tensor, kernel_size: tuple[int, int], sigma: tuple[float, float]
) -> torch.Tensor:
    """Separable Gaussian blur with reflect borders, as kornia's ``gaussian_blur2d``.

    ``kernel_size[0]`` and ``sigma[0]`` act along the height, ``[1]`` along the width. Each 1-D
    kernel is ``exp(-t^2 / (2 sigma^2))`` on ``t = -(k // 2) .. k // 2``, normalised to sum 1.
    As ``sigma -> 0`` the kernel becomes a delta and the output equals ``x``.

    Args:
        x: (B, C, H, W).
        kernel_size: odd sizes (kh, kw), each smaller than twice the image side.
        sigma: positive (sigma_h, sigma_w).

    Returns:
        (B, C, H, W).
    """
    _check_images("gaussian_blur", "x", x)
    kh, kw = (int(k) for k in kernel_size)
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"gaussian_blur: kernel_size must be odd and >= 1; got {kernel_size}")
    if min(float(s) for s in sigma) <= 0:
        raise ValueError(f"gaussian_blur: sigma must be > 0; got {sigma}")
    c = x.shape[1]
    gh = _gaussian_1d(kh, float(sigma[0]), x).view(1, 1, kh, 1).expand(c, 1, kh, 1)
    gw = _gaussian_1d(kw, float(sigma[1]), x).view(1, 1, 1, kw).expand(c, 1, 1, kw)
    y = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
    y = F.conv2d(y, gh, groups=c)
    return F.conv2d(y, gw, groups=c)


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class PCLSRParams:
    """The draws of one call of :class:`PCLSRViews` (replayable).

    Attributes:
        sharp_factors: (M, B) sharpness factors, one per copy and image.
        kernel_sizes: (M, 2) int64 odd blur kernel sizes (height, width), one pair per copy.
        sigmas: (M, 2) blur sigmas (height, width), one pair per copy (shared by the batch).
    """

    sharp_factors: torch.Tensor
    kernel_sizes: torch.Tensor
    sigmas: torch.Tensor


class PCLSRViewsOutput(NamedTuple):
    """Positives (1 + M, B, C, H, W), first the HR itself; negatives (1 + M, B, C, H, W), first
    the bicubic-upsampled LR."""

    positives: torch.Tensor
    negatives: torch.Tensor


def sample_pcl_sr_params(
    batch_size: int,
    *,
    num_copies: int = 3,
    sharp_range: tuple[float, float] = (0.5, 3.0),
    kernel_range: tuple[int, int] = (3, 11),
    sigma_range: tuple[float, float] = (0.1, 2.0),
    generator: torch.Generator | None = None,
) -> PCLSRParams:
    """Draw the sharpening factors and blur kernels of one call (``mcl_neg`` = M copies each).

    As ``trainer.py`` (``sharp_value + U(0, 1) * sharp_range`` per image, defaults 0.5 and 2.5)
    and ``RandomDegrad.__call__`` with ``--gpu_blur`` (``kx, ky = randint(1, 5) * 2 + 1``,
    ``sx, sy = U(0, 1) * 1.9 + 0.1``, one draw per copy shared by the batch).

    Args:
        batch_size: B >= 1.
        num_copies: M >= 1 sharpened positives and M blurred negatives.
        sharp_range: (low, high) of the uniform sharpness factor.
        kernel_range: (low, high) odd kernel sizes, drawn uniformly among the odd sizes.
        sigma_range: (low, high) of the uniform blur sigma, low > 0.
        generator: the source of randomness (on CPU).

    Returns:
        :class:`PCLSRParams` on CPU.
    """
    fn = "sample_pcl_sr_params"
    b = _checks.check_int(fn, "batch_size", batch_size, min_value=1)
    m = _checks.check_int(fn, "num_copies", num_copies, min_value=1)
    _checks.check_generator(fn, generator)
    s_lo, s_hi = (float(v) for v in sharp_range)
    if not 0 <= s_lo <= s_hi:
        raise ValueError(f"{fn}: sharp_range must satisfy 0 <= low <= high; got {sharp_range}")
    k_lo, k_hi = (int(v) for v in kernel_range)
    if k_lo < 1 or k_lo % 2 == 0 or k_hi % 2 == 0 or k_hi < k_lo:
        raise ValueError(
            f"{fn}: kernel_range must be odd sizes 1 <= low <= high; got {kernel_range}"
        )
    g_lo, g_hi = (float(v) for v in sigma_range)
    if not 0 < g_lo <= g_hi:
        raise ValueError(f"{fn}: sigma_range must satisfy 0 < low <= high; got {sigma_range}")
    u = torch.rand(m, b, generator=generator, dtype=torch.float64)
    n_sizes = (k_hi - k_lo) // 2 + 1
    k = torch.randint(n_sizes, (m, 2), generator=generator) * 2 + k_lo
    v = torch.rand(m, 2, generator=generator, dtype=torch.float64)
    return PCLSRParams(
        sharp_factors=s_lo + (s_hi - s_lo) * u,
        kernel_sizes=k,
        sigmas=g_lo + (g_hi - g_lo) * v,
    )


def apply_pcl_sr_views(
    hr: torch.Tensor, lr: torch.Tensor, params: PCLSRParams, *, quantize_views: bool = True
) -> PCLSRViewsOutput:
    """Positives and hard negatives of an HR batch from drawn params (deterministic).

    Positives: ``[hr] + [sharpness(hr, f_m)]``; negatives:
    ``[clamp(bicubic(lr -> (H, W), align_corners=True), 0, 1)] + [gaussian_blur(hr, k_m, s_m)]``.
    The sharpened and blurred copies are quantised to 8 bits when ``quantize_views`` (as the
    released code, ``utility.quantize``); the upsampled LR is only clamped (``infoNCE``).

    Args:
        hr: (B, C, H, W) HR images in [0, 1].
        lr: (B, C, h, w) LR images in [0, 1] (any h, w; upsampled to (H, W)).
        params: from :func:`sample_pcl_sr_params` with the same B.
        quantize_views: round the sharpened and blurred copies to multiples of 1/255.

    Returns:
        :class:`PCLSRViewsOutput`.
    """
    fn = "apply_pcl_sr_views"
    _check_images(fn, "hr", hr)
    _check_images(fn, "lr", lr)
    _checks.check_same_device(fn, "lr", lr, "hr", hr)
    _checks.check_same_dtype(fn, "lr", lr, "hr", hr)
    if lr.shape[:2] != hr.shape[:2]:
        raise ValueError(
            f"{fn}: lr must have the batch and channels of hr {tuple(hr.shape[:2])}; "
            f"got {tuple(lr.shape)}"
        )
    if params.sharp_factors.shape[1] != hr.shape[0]:
        raise ValueError(
            f"{fn}: params were drawn for B={params.sharp_factors.shape[1]}; hr has B={hr.shape[0]}"
        )
    _checks.check_bool(fn, "quantize_views", quantize_views)
    size = (hr.shape[-2], hr.shape[-1])
    up = lr
    if lr.shape[-2:] != hr.shape[-2:]:
        up = F.interpolate(lr, size=size, mode="bicubic", align_corners=True)
    positives = [hr]
    negatives = [up.clamp(0.0, 1.0)]
    for m in range(params.sharp_factors.shape[0]):
        f = params.sharp_factors[m].to(device=hr.device, dtype=hr.dtype)
        s = sharpness(hr, f)
        ks = params.kernel_sizes[m].tolist()
        sg = params.sigmas[m].tolist()
        n = gaussian_blur(hr, (ks[0], ks[1]), (sg[0], sg[1]))
        positives.append(quantize(s) if quantize_views else s)
        negatives.append(quantize(n) if quantize_views else n)
    return PCLSRViewsOutput(torch.stack(positives), torch.stack(negatives))


class PCLSRViews(nn.Module):
    """Draw and build PCL-SR positives and hard negatives; see :func:`apply_pcl_sr_views`.

    Example:
        >>> import torch
        >>> hr, lr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 8, 8)
        >>> out = PCLSRViews()(hr, lr, generator=torch.Generator().manual_seed(0))
        >>> tuple(out.positives.shape), tuple(out.negatives.shape)
        ((4, 2, 3, 16, 16), (4, 2, 3, 16, 16))
    """

    def __init__(
        self,
        num_copies: int = 3,
        *,
        sharp_range: tuple[float, float] = (0.5, 3.0),
        kernel_range: tuple[int, int] = (3, 11),
        sigma_range: tuple[float, float] = (0.1, 2.0),
        quantize_views: bool = True,
    ) -> None:
        super().__init__()
        fn = "PCLSRViews"
        self.num_copies = _checks.check_int(fn, "num_copies", num_copies, min_value=1)
        self.sharp_range = (float(sharp_range[0]), float(sharp_range[1]))
        self.kernel_range = (int(kernel_range[0]), int(kernel_range[1]))
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))
        self.quantize_views = _checks.check_bool(fn, "quantize_views", quantize_views)
        try:  # validate the ranges once, with this class's name
            sample_pcl_sr_params(1, num_copies=1, sharp_range=self.sharp_range,
                                 kernel_range=self.kernel_range, sigma_range=self.sigma_range,
                                 generator=torch.Generator())  # fmt: skip
        except ValueError as e:
            raise ValueError(str(e).replace("sample_pcl_sr_params", fn)) from None

    def forward(
        self, hr: torch.Tensor, lr: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> PCLSRViewsOutput:
        _check_images("PCLSRViews", "hr", hr)
        params = sample_pcl_sr_params(
            hr.shape[0],
            num_copies=self.num_copies,
            sharp_range=self.sharp_range,
            kernel_range=self.kernel_range,
            sigma_range=self.sigma_range,
            generator=generator,
        )
        return apply_pcl_sr_views(hr, lr, params, quantize_views=self.quantize_views)

    def extra_repr(self) -> str:
        return (
            f"num_copies={self.num_copies}, sharp_range={self.sharp_range}, "
            f"kernel_range={self.kernel_range}, sigma_range={self.sigma_range}, "
            f"quantize_views={self.quantize_views}"
        )


# --------------------------------------------------------------------------- embedding


class PCLSREmbedding(nn.Module):
    """The PCL-SR embedding network: the discriminator trunk on Haar high-pass input.

    ``Discriminator`` with ``use_wavelet``: input :func:`haar_highpass` (3C channels at H/2);
    ``depth`` blocks conv3x3 (no bias) + BatchNorm, LeakyReLU(``negative_slope``) after each.
    Block 0 maps 3C -> ``width``; block k >= 1 has stride 2 when k is odd and doubles the
    channels when k is even (official: width 64, depth 8 -> 64, 64, 128, 128, 256, 256, 512, 512).
    ``forward`` returns block ``cl_layer``'s output (before the activation when ``before_relu``;
    see the module docstring on the released in-place quirk). :meth:`patch_logits` is the
    ``patchD`` head: AdaptiveAvgPool2d(``patch_grid``) + 1x1 conv on the last block's activation,
    ``patch_grid**2`` logits per image. BN uses batch statistics in training mode (as released).

    Example:
        >>> import torch
        >>> net = PCLSREmbedding(3, width=8, depth=6, cl_layer=4)
        >>> x = torch.rand(2, 3, 32, 32)
        >>> tuple(net(x).shape), tuple(net.patch_logits(x).shape)
        ((2, 32, 4, 4), (2, 16))
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        width: int = 64,
        depth: int = 8,
        cl_layer: int = 4,
        before_relu: bool = True,
        negative_slope: float = 0.2,
        patch_grid: int = 4,
    ) -> None:
        super().__init__()
        fn = "PCLSREmbedding"
        self.in_channels = _checks.check_int(fn, "in_channels", in_channels, min_value=1)
        self.width = _checks.check_int(fn, "width", width, min_value=1)
        self.depth = _checks.check_int(fn, "depth", depth, min_value=1)
        self.cl_layer = _checks.check_int(fn, "cl_layer", cl_layer, min_value=0)
        if self.cl_layer >= self.depth:
            raise ValueError(f"{fn}: cl_layer must be < depth={self.depth}; got {cl_layer}")
        self.before_relu = _checks.check_bool(fn, "before_relu", before_relu)
        self.negative_slope = _checks.check_nonnegative(fn, "negative_slope", negative_slope)
        self.patch_grid = _checks.check_int(fn, "patch_grid", patch_grid, min_value=1)
        blocks: list[nn.Module] = []
        c_in, c_out = 3 * self.in_channels, self.width
        for k in range(self.depth):
            stride = 1
            if k >= 1:
                c_in = c_out
                if k % 2 == 1:
                    stride = 2
                else:
                    c_out *= 2
            conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            blocks.append(nn.Sequential(conv, nn.BatchNorm2d(c_out)))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(self.patch_grid), nn.Conv2d(c_out, 1, 1))

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every block's feature (pre- or post-activation per ``before_relu``) and the last
        activation."""
        _check_images("PCLSREmbedding", "x", x)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"PCLSREmbedding: x must have {self.in_channels} channels; got {tuple(x.shape)}"
            )
        h = haar_highpass(x)
        feats: list[torch.Tensor] = []
        for block in self.blocks:
            z = block(h)
            h = F.leaky_relu(z, self.negative_slope)
            feats.append(z if self.before_relu else h)
        return feats, h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_l, h, w): the feature of block ``cl_layer``."""
        feats, _ = self.features(x)
        return feats[self.cl_layer]

    def patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, patch_grid**2): the patch discriminator logits."""
        _, h = self.features(x)
        return self.head(h).flatten(1)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, width={self.width}, depth={self.depth}, "
            f"cl_layer={self.cl_layer}, before_relu={self.before_relu}, "
            f"negative_slope={self.negative_slope}, patch_grid={self.patch_grid}"
        )


# --------------------------------------------------------------------------- losses


def pcl_sr_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``s(a, b) = mean_{h,w} cos_c(a[:, :, h, w], b[:, :, h, w])``: (B,) (as ``nce``).

    Channel cosine per location (``F.normalize`` with eps 1e-12), averaged spatially; reduced in
    at least float32.
    """
    fn = "pcl_sr_similarity"
    _check_images(fn, "a", a)
    _check_images(fn, "b", b)
    if a.shape != b.shape:
        raise ValueError(f"{fn}: b must have the shape of a {tuple(a.shape)}; got {tuple(b.shape)}")
    acc = torch.promote_types(a.dtype, torch.float32)
    an = F.normalize(a.to(acc), dim=1)
    bn = F.normalize(b.to(acc), dim=1)
    return (an * bn).sum(dim=1).mean(dim=(-2, -1))


def _as_layers(fn: str, out: object) -> list[torch.Tensor]:
    layers = [out] if isinstance(out, torch.Tensor) else list(out)  # type: ignore[call-overload]
    if not layers or not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in layers):
        raise TypeError(f"{fn}: embed must return a (B, C, h, w) tensor or a list of them")
    return layers


def _stack_views(fn: str, name: str, views: object, sr: torch.Tensor) -> list[torch.Tensor]:
    if isinstance(views, torch.Tensor):
        if views.dim() == 4:
            views = views.unsqueeze(0)
        if views.dim() != 5:
            raise ValueError(
                f"{fn}: {name} must have shape (K, B, C, H, W); got {tuple(views.shape)}"
            )
        seq = list(views.unbind(0))
    elif isinstance(views, (list, tuple)):
        seq = list(views)
    else:
        raise TypeError(
            f"{fn}: {name} must be a tensor or a list of tensors; got {type(views).__name__}"
        )
    if not seq:
        raise ValueError(f"{fn}: {name} must hold at least one image batch")
    for t in seq:
        _checks.check_float(fn, name, t)
        if t.shape != sr.shape:
            raise ValueError(
                f"{fn}: every {name} batch must have the shape of sr {tuple(sr.shape)}; "
                f"got {tuple(t.shape)}"
            )
        _checks.check_same_device(fn, name, t, "sr", sr)
        _checks.check_same_dtype(fn, name, t, "sr", sr)
    return seq


def pcl_sr_loss(
    sr: torch.Tensor,
    positives: torch.Tensor | Sequence[torch.Tensor],
    negatives: torch.Tensor | Sequence[torch.Tensor],
    *,
    embed: Embed,
    detach_sr_features: bool = False,
) -> torch.Tensor:
    """PCL-SR generator-side contrastive loss (``Adversarial.infoNCE`` / ``nce``).

    Wu, Jiang, Liu. *A Practical Contrastive Learning Framework for Single-Image
    Super-Resolution.* IEEE TNNLS 2023, arXiv 2111.13924.

    With ``phi = embed`` and ``s`` = :func:`pcl_sr_similarity`, for each positive ``p``::

        l_p = mean_b CE([s(phi(sr), phi(p)), s(phi(sr), phi(n_1)), ..., s(phi(sr), phi(n_N))], 0)
        L   = mean_p l_p                 (and the mean over layers when embed returns a list)

    No temperature. ``embed`` is called once on ``sr`` and once per positive and negative batch
    (as released: BN batch statistics per call). Positive and negative features are computed
    under ``torch.no_grad()`` (constants, as released). ``detach_sr_features=False`` (the paper)
    lets the gradient reach ``sr``; ``True`` reproduces the released code, whose SR features are
    also computed under ``no_grad``: then the gradient to ``sr`` is exactly zero (the value is
    kept connected to ``sr`` through ``0 * sr.sum()``).

    Args:
        sr: (B, C, H, W) super-resolved images.
        positives: (P, B, C, H, W) or a list of P (B, C, H, W) batches; first the HR.
        negatives: (N, B, C, H, W) or a list of N (B, C, H, W) batches, HR-sized.
        embed: image batch -> (B, C', h, w) features or a list of them (layers).
        detach_sr_features: released-code parity (no gradient to ``sr``).

    Returns:
        A scalar (float32 for half inputs).

    Raises:
        TypeError: non-floating tensors, mismatched dtypes, a bad ``embed``.
        ValueError: shapes, empty lists, devices.

    Example:
        >>> import torch
        >>> sr = torch.rand(2, 3, 16, 16, requires_grad=True)
        >>> pos, neg = torch.rand(2, 2, 3, 16, 16), torch.rand(3, 2, 3, 16, 16)
        >>> pcl_sr_loss(sr, pos, neg, embed=haar_highpass).backward()
    """
    fn = "pcl_sr_loss"
    _check_images(fn, "sr", sr)
    pos = _stack_views(fn, "positives", positives, sr)
    neg = _stack_views(fn, "negatives", negatives, sr)
    if not callable(embed):
        raise TypeError(f"{fn}: embed must be callable; got {type(embed).__name__}")
    _checks.check_bool(fn, "detach_sr_features", detach_sr_features)
    if detach_sr_features:
        with torch.no_grad():
            f_sr = _as_layers(fn, embed(sr))
    else:
        f_sr = _as_layers(fn, embed(sr))
    with torch.no_grad():
        f_pos = [_as_layers(fn, embed(p)) for p in pos]
        f_neg = [_as_layers(fn, embed(n)) for n in neg]
    total = sr.new_zeros((), dtype=torch.promote_types(sr.dtype, torch.float32))
    for layer, a in enumerate(f_sr):
        s_neg = torch.stack([pcl_sr_similarity(a, f[layer]) for f in f_neg], dim=1)
        per_pos = []
        for f in f_pos:
            s_pos = pcl_sr_similarity(a, f[layer])
            logits = torch.cat([s_pos.unsqueeze(1), s_neg], dim=1)
            per_pos.append((torch.logsumexp(logits, dim=1) - s_pos).mean())
        total = total + torch.stack(per_pos).mean()
    loss = total / len(f_sr)
    if detach_sr_features and sr.requires_grad:
        loss = loss + 0.0 * sr.sum().to(loss.dtype)
    return loss


def pcl_sr_dual_contrastive_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> torch.Tensor:
    """PCL-SR D-side dual contrastive loss (``Adversarial.contrastive_D_loss``).

    Both inputs are flattened (patch logits of all images): ``r`` (R,), ``f`` (K,)::

        L = mean_i CE([r_i, f_1..f_K], 0) + mean_j CE([-f_j, -r_1..-r_R], 0)
          = mean_i softplus(LSE(f) - r_i) + mean_j softplus(LSE(-r) + f_j)

    computed in the second form (O(R + K) memory, no R x K matrix). In the released
    ``CL-patchD`` step the real logits are those of the sharpened copies and the HR, the fake
    logits those of the blurred copies and the detached SR (the upsampled LR is left out).

    Args:
        real_logits: any shape, R entries (>= 1).
        fake_logits: any shape, K entries (>= 1).

    Returns:
        A scalar (float32 for half inputs).

    Example:
        >>> import torch
        >>> round(pcl_sr_dual_contrastive_loss(torch.zeros(4), torch.zeros(4)).item(), 4)
        3.2189
    """
    fn = "pcl_sr_dual_contrastive_loss"
    _checks.check_float(fn, "real_logits", real_logits)
    _checks.check_float(fn, "fake_logits", fake_logits)
    _checks.check_same_device(fn, "fake_logits", fake_logits, "real_logits", real_logits)
    _checks.check_same_dtype(fn, "fake_logits", fake_logits, "real_logits", real_logits)
    if real_logits.numel() == 0 or fake_logits.numel() == 0:
        raise ValueError(f"{fn}: real_logits and fake_logits must each hold at least one logit")
    # An inf logit would vanish inside softplus/logsumexp (a finite loss): refuse it.
    _checks.check_finite(fn, "real_logits", real_logits)
    _checks.check_finite(fn, "fake_logits", fake_logits)
    acc = torch.promote_types(real_logits.dtype, torch.float32)
    r = real_logits.reshape(-1).to(acc)
    f = fake_logits.reshape(-1).to(acc)
    first = F.softplus(torch.logsumexp(f, 0) - r).mean()
    second = F.softplus(torch.logsumexp(-r, 0) + f).mean()
    return first + second


class PCLSRLoss(nn.Module):
    """PCL-SR generator-side contrastive loss; see :func:`pcl_sr_loss`.

    Stores only ``detach_sr_features``; the embedding network is passed to ``forward``.

    Example:
        >>> import torch
        >>> loss = PCLSRLoss()
        >>> sr, pos = torch.rand(2, 3, 16, 16), torch.rand(2, 2, 3, 16, 16)
        >>> neg = torch.rand(2, 2, 3, 16, 16)
        >>> loss(sr, pos, neg, embed=haar_highpass).dim()
        0
    """

    def __init__(self, *, detach_sr_features: bool = False) -> None:
        super().__init__()
        self.detach_sr_features = _checks.check_bool(
            "PCLSRLoss", "detach_sr_features", detach_sr_features
        )

    def forward(
        self,
        sr: torch.Tensor,
        positives: torch.Tensor | Sequence[torch.Tensor],
        negatives: torch.Tensor | Sequence[torch.Tensor],
        *,
        embed: Embed,
    ) -> torch.Tensor:
        return pcl_sr_loss(
            sr, positives, negatives, embed=embed, detach_sr_features=self.detach_sr_features
        )

    def extra_repr(self) -> str:
        return f"detach_sr_features={self.detach_sr_features}"


class PCLSRDualContrastiveLoss(nn.Module):
    """PCL-SR D-side dual contrastive loss; see :func:`pcl_sr_dual_contrastive_loss`.

    Example:
        >>> import torch
        >>> PCLSRDualContrastiveLoss()(torch.randn(2, 16), torch.randn(3, 16)).dim()
        0
    """

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return pcl_sr_dual_contrastive_loss(real_logits, fake_logits)
