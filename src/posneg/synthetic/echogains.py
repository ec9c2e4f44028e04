"""EchoGAINS: geometric re-augmentation of segmentation frames with diffusion inpainting.

Van De Vyver, ..., Lovstakken, Smistad. *Generative augmentations for improved cardiac
ultrasound segmentation using diffusion models.* arXiv 2502.20100, 2025. Official code
``GillesVanDeVyver/EchoGAINS`` (commit b16129a9): ``echogains/prepare_reaugment.py``
(``prepare_gen_aug_seg_sample``), ``echogains/utils.py`` (the transforms, ``get_repaint_mask``)
and ``echogains/RePaint/guided_diffusion/`` (``scheduler.get_schedule_jump``,
``gaussian_diffusion.p_sample`` / ``undo``).

Per frame (image ``I``, label map ``Y``, sector ``S = {I != 0}``):

1. transforms applied in this order, each with probability ``prob``: depth increase (``Delta``
   black rows added at the bottom, the canvas padded to a square, resized back), rotation by an
   integer angle about the apex ``(W // 2, 0)``, sector width (width resized by a factor, then
   centre-padded or cropped), translation by a radius at a uniform angle. Images are warped
   bilinearly with zeros outside; labels by nearest neighbour (the official warps each label's
   boolean mask at order 0 and reassembles, which is the same map);
2. validity: at least ``min_fraction`` (50%) of the labelled (non-zero) pixels lie in the original
   sector; otherwise all draws are repeated from the original, at most ``max_tries`` (30) times,
   after which the original frame is kept (the official resets to it). A frame whose labels
   all left the frame passes (``0 < 0.5 * 0`` is false), as in the official code;
3. the image is masked by the original sector: ``I' = I_aug * S`` (labels are not masked);
4. keep mask ``K = NOT dilate(I' == 0, ones(border x border))`` (1 = known pixel; OpenCV's
   anchor for an even kernel: offsets ``-border//2 .. border - border//2 - 1``);
5. :func:`repaint` fills ``1 - K`` with any DDPM (RePaint with jumps).

Differences from the official code, deliberate: images keep their input scale (the official
multiplies by 255 to write PNGs); resizes are not anti-aliased (skimage's ``resize`` smooths
when shrinking); :func:`repaint` injects the known region at every reverse step including the
first (the official skips the very first, where ``alpha_bar ~ 0`` makes the injected term
pure noise) and, with ``paste_known`` (default), pastes the known pixels once more after the
last step (the official returns the model's last sample there).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = [
    "EchoGAINSAugment",
    "EchoGAINSParams",
    "EchoGAINSSample",
    "apply_echogains_params",
    "echogains_keep_mask",
    "echogains_valid",
    "repaint",
    "repaint_schedule",
    "sample_echogains_params",
]

CITATION = """
@article{vandevyver2025echogains,
  title   = {Generative augmentations for improved cardiac ultrasound segmentation using
             diffusion models},
  author  = {Van De Vyver, Gilles and Lovstakken, Lasse and Smistad, Erik and others},
  journal = {arXiv preprint arXiv:2502.20100},
  year    = {2025}
}
"""


class EchoGAINSParams(NamedTuple):
    """Per-sample transform parameters (identity values where a transform is not applied).

    Attributes:
        depth: (N,) int64 rows added at the bottom (0: off).
        rotation: (N,) float64 degrees about the apex (0: off).
        width: (N,) float64 sector-width factor (1: off).
        shift: (N, 2) float64 translation ``(x, y)`` in pixels of skimage's inverse map: the
            output at ``p`` reads the input at ``p + shift`` (0: off).
    """

    depth: torch.Tensor
    rotation: torch.Tensor
    width: torch.Tensor
    shift: torch.Tensor


class EchoGAINSSample(NamedTuple):
    """A prepared batch: ``image`` (N, H, W) masked by the sector, ``label`` (N, H, W) int64,
    ``keep`` (N, H, W) bool (1 = known pixel, 0 = to inpaint)."""

    image: torch.Tensor
    label: torch.Tensor
    keep: torch.Tensor


def _pair(fn: str, name: str, value: Any, *, integer: bool) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{fn}: {name} must be a (low, high) pair; got {value!r}")
    check = _checks.check_int if integer else _checks.check_real
    lo, hi = (float(check(fn, name, v)) for v in value)
    if not lo < hi:
        raise ValueError(f"{fn}: {name} must have low < high; got {value!r}")
    return lo, hi


def sample_echogains_params(
    n: int,
    *,
    depth_range: tuple[int, int] = (0, 150),
    rotation_range: tuple[int, int] = (-30, 30),
    width_range: tuple[float, float] = (0.5, 1.5),
    radius_range: tuple[int, int] = (0, 50),
    prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> EchoGAINSParams:
    """Draw the four transforms' parameters for ``n`` frames (the official defaults, 256 px).

    Integers ``randint(low, high)`` for depth, rotation and radius, ``U(low, high)`` for the
    width factor, the translation angle ``U(0, 2 pi)``; each transform on with probability
    ``prob``. Drawn on the generator's device (CPU without one).
    """
    fn = "sample_echogains_params"
    count = _checks.check_int(fn, "n", n, min_value=0)
    d_lo, d_hi = _pair(fn, "depth_range", depth_range, integer=True)
    r_lo, r_hi = _pair(fn, "rotation_range", rotation_range, integer=True)
    w_lo, w_hi = _pair(fn, "width_range", width_range, integer=False)
    t_lo, t_hi = _pair(fn, "radius_range", radius_range, integer=True)
    if d_lo < 0 or t_lo < 0 or w_lo <= 0:
        raise ValueError(f"{fn}: depth_range and radius_range must be >= 0, width_range > 0")
    p = _checks.check_range(fn, "prob", prob, 0.0, 1.0)
    _checks.check_generator(fn, generator)
    g = generator
    dev = g.device if g is not None else torch.device("cpu")
    f64 = torch.float64
    on = torch.rand(count, 4, generator=g, dtype=f64, device=dev) < p
    depth = torch.randint(int(d_lo), int(d_hi), (count,), generator=g, device=dev)
    rot = torch.randint(int(r_lo), int(r_hi), (count,), generator=g, device=dev).double()
    width = w_lo + (w_hi - w_lo) * torch.rand(count, generator=g, dtype=f64, device=dev)
    radius = torch.randint(int(t_lo), int(t_hi), (count,), generator=g, device=dev).double()
    angle = 2 * math.pi * torch.rand(count, generator=g, dtype=f64, device=dev)
    shift = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)
    return EchoGAINSParams(
        torch.where(on[:, 0], depth, torch.zeros_like(depth)),
        torch.where(on[:, 1], rot, torch.zeros_like(rot)),
        torch.where(on[:, 2], width, torch.ones_like(width)),
        torch.where(on[:, 3, None], shift, torch.zeros_like(shift)),
    )


def _warp(
    image: torch.Tensor,
    label: torch.Tensor,
    x_in: torch.Tensor,
    y_in: torch.Tensor,
    active: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` bilinearly and ``label`` by nearest neighbour at input pixel coordinates
    ``(x_in, y_in)`` (N, H, W), zeros outside; inactive samples are returned unchanged."""
    h, w = image.shape[-2:]
    grid = torch.stack([2 * x_in / (w - 1) - 1, 2 * y_in / (h - 1) - 1], dim=-1)
    work = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    grid = grid.to(device=image.device, dtype=work)
    im = F.grid_sample(
        image[:, None].to(work), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )[:, 0].to(image.dtype)
    lb = F.grid_sample(
        label[:, None].to(work), grid, mode="nearest", padding_mode="zeros", align_corners=True
    )[:, 0]
    lb = lb.round().to(label.dtype)
    a = active.to(image.device)[:, None, None]
    return torch.where(a, im, image), torch.where(a, lb, label)


def apply_echogains_params(
    image: torch.Tensor, label: torch.Tensor, params: EchoGAINSParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply depth, rotation, width and translation (in that order) to a batch of frames.

    Args:
        image: (N, H, W) floating images (0 outside the sector), H, W >= 2.
        label: (N, H, W) integer label maps.
        params: from :func:`sample_echogains_params` (or built by hand).

    Returns:
        ``(image, label)`` transformed, same shapes and dtypes; samples whose parameters are all
        identity values are returned bit-identical.
    """
    fn = "apply_echogains_params"
    _check_frames(fn, image, label)
    n, h, w = image.shape
    if params.depth.shape != (n,) or params.shift.shape != (n, 2):
        raise ValueError(
            f"{fn}: params must hold {n} samples; got depth {tuple(params.depth.shape)}"
        )
    dev = image.device
    rows = torch.arange(h, dtype=torch.float64, device=dev)[None, :, None].expand(n, h, w)
    cols = torch.arange(w, dtype=torch.float64, device=dev)[None, None, :].expand(n, h, w)
    depth = params.depth.to(dev, torch.float64)[:, None, None]
    # depth: canvas (H + D) x (H + D), the frame at the top, centred; resized back to (H, W)
    side = h + depth
    pad = torch.div(side - w, 2, rounding_mode="floor")
    y_in = (rows + 0.5) * side / h - 0.5
    x_in = (cols + 0.5) * side / w - 0.5 - pad
    image, label = _warp(image, label, x_in, y_in, params.depth != 0)
    # rotation about the apex (W // 2, 0): input = R(theta) (out - c) + c
    theta = torch.deg2rad(params.rotation.to(dev, torch.float64))[:, None, None]
    cx, cy = float(w // 2), 0.0
    x_in = theta.cos() * (cols - cx) - theta.sin() * (rows - cy) + cx
    y_in = theta.sin() * (cols - cx) + theta.cos() * (rows - cy) + cy
    image, label = _warp(image, label, x_in, y_in, params.rotation != 0)
    # sector width: resize the width to int(W * f), then centre-pad (f < 1) or crop (f >= 1)
    factor = params.width.to(dev, torch.float64)
    new_w = torch.floor(w * factor).clamp(min=1)[:, None, None]
    offset = torch.where(
        new_w < w,
        -torch.div(w - new_w, 2, rounding_mode="floor"),
        torch.div(new_w - w, 2, rounding_mode="floor"),
    )
    c_res = cols + offset
    x_in = (c_res + 0.5) * w / new_w - 0.5
    x_in = torch.where((c_res < 0) | (c_res >= new_w), torch.full_like(x_in, -2.0 * w), x_in)
    image, label = _warp(image, label, x_in, rows, params.width != 1)
    # translation: the output at p reads the input at p + shift
    shift = params.shift.to(dev, torch.float64)
    x_in = cols + shift[:, 0, None, None]
    y_in = rows + shift[:, 1, None, None]
    return _warp(image, label, x_in, y_in, (params.shift != 0).any(dim=1))


def _check_frames(fn: str, image: torch.Tensor, label: torch.Tensor) -> None:
    _checks.check_float(fn, "image", image)
    _checks.check_tensor(fn, "label", label)
    if image.dim() != 3 or image.shape[-1] < 2 or image.shape[-2] < 2:
        raise ValueError(
            f"{fn}: image must have shape (N, H, W) with H, W >= 2; got {tuple(image.shape)}"
        )
    if label.dtype.is_floating_point or label.dtype == torch.bool:
        raise TypeError(f"{fn}: label must be an integer tensor; got {label.dtype}")
    if label.shape != image.shape:
        raise ValueError(
            f"{fn}: label must have the image's shape {tuple(image.shape)}; "
            f"got {tuple(label.shape)}"
        )
    if label.device != image.device:
        raise ValueError(f"{fn}: label is on {label.device} but image is on {image.device}")


def echogains_valid(
    label: torch.Tensor, sector: torch.Tensor, *, min_fraction: float = 0.5
) -> torch.Tensor:
    """The validity rule: ``|Y != 0 and S| >= min_fraction * |Y != 0|`` per frame.

    Args:
        label: (N, H, W) transformed label maps.
        sector: (N, H, W) bool, the *original* sectors.
        min_fraction: required share of labelled pixels inside the sector (official 0.5).

    Returns:
        (N,) bool (a frame without labelled pixels is valid, as in the official code).
    """
    fn = "echogains_valid"
    _checks.check_tensor(fn, "label", label)
    _checks.check_tensor(fn, "sector", sector)
    if label.shape != sector.shape or label.dim() != 3:
        raise ValueError(
            f"{fn}: label and sector must have one (N, H, W) shape; got {tuple(label.shape)} "
            f"and {tuple(sector.shape)}"
        )
    frac = _checks.check_range(fn, "min_fraction", min_fraction, 0.0, 1.0)
    labelled = label != 0
    inside = (labelled & sector.bool()).sum(dim=(1, 2))
    return ~(inside < frac * labelled.sum(dim=(1, 2)))


def echogains_keep_mask(image: torch.Tensor, *, border: int = 10) -> torch.Tensor:
    """The RePaint keep mask ``NOT dilate(image == 0, ones(border, border))`` (1 = known).

    Args:
        image: (N, H, W) images masked by the sector (0 = missing).
        border: the square dilation kernel's side (official 10; 1 = no dilation).

    Returns:
        (N, H, W) bool.
    """
    fn = "echogains_keep_mask"
    _checks.check_float(fn, "image", image)
    if image.dim() != 3:
        raise ValueError(f"{fn}: image must have shape (N, H, W); got {tuple(image.shape)}")
    k = _checks.check_int(fn, "border", border, min_value=1)
    missing = (image == 0).to(torch.float32)[:, None]
    before = k // 2  # OpenCV's default anchor of a k x k kernel
    padded = F.pad(missing, (before, k - 1 - before, before, k - 1 - before), value=0.0)
    dilated = F.max_pool2d(padded, kernel_size=k, stride=1)[:, 0]
    return dilated == 0


def repaint_schedule(
    num_steps: int, *, jump_length: int = 10, jump_n_sample: int = 10
) -> list[int]:
    """RePaint's time schedule with jumps (``get_schedule_jump`` with one jump level).

    From ``num_steps - 1`` down to ``-1``; at every multiple ``j`` of ``jump_length`` below
    ``num_steps - jump_length`` the schedule goes back up ``jump_length`` steps,
    ``jump_n_sample - 1`` times. Consecutive entries differ by 1.
    """
    fn = "repaint_schedule"
    t_max = _checks.check_int(fn, "num_steps", num_steps, min_value=1)
    length = _checks.check_int(fn, "jump_length", jump_length, min_value=1)
    n_sample = _checks.check_int(fn, "jump_n_sample", jump_n_sample, min_value=1)
    jumps = {j: n_sample - 1 for j in range(0, t_max - length, length)}
    t, times = t_max, []
    while t >= 1:
        t -= 1
        times.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(length):
                t += 1
                times.append(t)
    times.append(-1)
    return times


def _eps(denoiser: Callable[..., Any], x: torch.Tensor, t: int) -> torch.Tensor:
    out = denoiser(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
    out = getattr(out, "sample", out)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(
            f"repaint: denoiser must return a tensor (or an object with .sample) of shape "
            f"{tuple(x.shape)}"
        )
    return out.to(x.dtype)


@torch.no_grad()
def repaint(
    denoiser: Callable[..., Any],
    scheduler: Any,
    known: torch.Tensor,
    keep: torch.Tensor,
    *,
    jump_length: int = 10,
    jump_n_sample: int = 10,
    clip_sample: bool = True,
    paste_known: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inpaint ``1 - keep`` with an epsilon-predicting DDPM, RePaint's resampling loop.

    Lugmayr et al., *RePaint*, CVPR 2022 (arXiv 2201.09865), as run by EchoGAINS. The sampled
    timesteps are the scheduler's (call ``scheduler.set_timesteps(n)`` first; diffusers
    ``DDPMScheduler``/``DDIMScheduler``): with ``s_0 < ... < s_{n-1}`` and
    ``a_i = alphas_cumprod[s_i]`` the respaced betas are ``b_i = 1 - a_i / a_{i-1}`` (``a_{-1} =
    1``). Following :func:`repaint_schedule`, a reverse step at ``i`` first injects the known
    region ``x <- K (sqrt(a_i) known + sqrt(1 - a_i) eps) + (1 - K) x``, then samples the DDPM
    posterior (predicted ``x_0`` clipped to [-1, 1] when ``clip_sample``, fixed posterior
    variance ``b_i (1 - a_{i-1}) / (1 - a_i)``, no noise at ``i = 0``); a forward step to ``i``
    is ``x <- sqrt(1 - b_i) x + sqrt(b_i) eps``. The denoiser is called with the training
    timestep ``s_i``. A model that learns its variance is used through its mean prediction only.

    Args:
        denoiser: ``denoiser(x, t) -> eps`` (or an object with ``.sample``, as a diffusers
            ``UNet2DModel``), ``x`` (N, C, H, W), ``t`` (N,) int64.
        scheduler: has ``alphas_cumprod`` (T,) and ``timesteps``.
        known: (N, C, H, W) images in the model's range (e.g. [-1, 1]).
        keep: (N, C, H, W) or (N, H, W) mask, 1 = known pixel.
        jump_length: RePaint's jump length (official 10).
        jump_n_sample: resampling repeats per jump point (official 10; 1 = no resampling).
        clip_sample: clip the predicted ``x_0``.
        paste_known: paste ``known`` into the result after the last step (see the module note).
        generator: the source of every noise draw.

    Returns:
        (N, C, H, W) inpainted images, ``known``'s dtype.
    """
    fn = "repaint"
    if not callable(denoiser):
        raise TypeError(f"{fn}: denoiser must be callable; got {type(denoiser).__name__}")
    _checks.check_float(fn, "known", known)
    if known.dim() != 4:
        raise ValueError(f"{fn}: known must have shape (N, C, H, W); got {tuple(known.shape)}")
    _checks.check_tensor(fn, "keep", keep)
    mask = keep[:, None] if keep.dim() == 3 else keep
    if mask.dim() != 4 or mask.shape[0] != known.shape[0] or mask.shape[-2:] != known.shape[-2:]:
        raise ValueError(
            f"{fn}: keep must have shape (N, H, W) or (N, C, H, W) matching known "
            f"{tuple(known.shape)}; got {tuple(keep.shape)}"
        )
    _checks.check_bool(fn, "clip_sample", clip_sample)
    _checks.check_bool(fn, "paste_known", paste_known)
    _checks.check_generator(fn, generator, known.device)
    if not hasattr(scheduler, "alphas_cumprod") or not hasattr(scheduler, "timesteps"):
        raise TypeError(f"{fn}: scheduler must have alphas_cumprod and timesteps (diffusers)")
    steps = sorted(int(t) for t in torch.as_tensor(scheduler.timesteps).reshape(-1).tolist())
    if not steps or len(set(steps)) != len(steps):
        raise ValueError(
            f"{fn}: scheduler.timesteps must be distinct and non-empty; call set_timesteps"
        )
    schedule = repaint_schedule(len(steps), jump_length=jump_length, jump_n_sample=jump_n_sample)
    work = known.dtype if known.dtype in (torch.float32, torch.float64) else torch.float32
    acp = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64).cpu()
    a = acp[torch.tensor(steps)]
    a_prev = torch.cat([torch.ones(1, dtype=torch.float64), a[:-1]])
    beta = 1 - a / a_prev
    k = mask.to(device=known.device, dtype=work)
    x0_known = known.to(work)

    def noise() -> torch.Tensor:
        return torch.randn(known.shape, generator=generator, device=known.device, dtype=work)

    x = noise()
    for t_last, t_cur in itertools.pairwise(schedule):
        if t_cur < t_last:
            i = t_last
            ai, api, bi = float(a[i]), float(a_prev[i]), float(beta[i])
            injected = math.sqrt(ai) * x0_known + math.sqrt(1 - ai) * noise()
            x = k * injected + (1 - k) * x
            eps = _eps(denoiser, x, steps[i])
            x0 = (x - math.sqrt(1 - ai) * eps) / math.sqrt(ai)
            if clip_sample:
                x0 = x0.clamp(-1, 1)
            mean = (bi * math.sqrt(api) / (1 - ai)) * x0 + (
                (1 - api) * math.sqrt(1 - bi) / (1 - ai)
            ) * x
            x = mean + math.sqrt(bi * (1 - api) / (1 - ai)) * noise() if i > 0 else mean
        else:
            b = float(beta[t_cur])
            x = math.sqrt(1 - b) * x + math.sqrt(b) * noise()
    if paste_known:
        x = k * x0_known + (1 - k) * x
    return x.to(known.dtype)


class EchoGAINSAugment(nn.Module):
    """EchoGAINS' preparation step: transformed frames, their labels and the keep mask.

    ``forward(image, label, generator=)`` draws the transforms per frame, retries invalid
    frames (see the module docstring), masks by the original sector and returns an
    :class:`EchoGAINSSample`; pass ``2 * image - 1`` (or the model's range) and ``keep`` to
    :func:`repaint` to fill the gaps. Repeat the batch (``repeat_interleave``) for several
    augmentations per frame (official 5). The ranges are in pixels of the input (the official
    values are for 256 x 256 frames).

    Args:
        depth_range, rotation_range, width_range, radius_range, prob: see
            :func:`sample_echogains_params`.
        min_fraction: the validity rule's share (0.5).
        max_tries: redraws before the original frame is kept (30).
        border: the keep mask's dilation kernel side (10).

    Example:
        >>> aug = EchoGAINSAugment(depth_range=(0, 4), radius_range=(0, 3), border=2)
        >>> img = torch.zeros(2, 16, 16); img[:, 2:14, 4:12] = 0.5
        >>> lab = torch.zeros(2, 16, 16, dtype=torch.long); lab[:, 6:10, 6:10] = 1
        >>> out = aug(img, lab, generator=torch.Generator().manual_seed(0))
        >>> out.keep.shape
        torch.Size([2, 16, 16])
    """

    def __init__(
        self,
        depth_range: tuple[int, int] = (0, 150),
        rotation_range: tuple[int, int] = (-30, 30),
        width_range: tuple[float, float] = (0.5, 1.5),
        radius_range: tuple[int, int] = (0, 50),
        prob: float = 0.5,
        min_fraction: float = 0.5,
        max_tries: int = 30,
        border: int = 10,
    ) -> None:
        super().__init__()
        fn = "EchoGAINSAugment"
        _pair(fn, "depth_range", depth_range, integer=True)
        _pair(fn, "rotation_range", rotation_range, integer=True)
        _pair(fn, "width_range", width_range, integer=False)
        _pair(fn, "radius_range", radius_range, integer=True)
        self.depth_range = (int(depth_range[0]), int(depth_range[1]))
        self.rotation_range = (int(rotation_range[0]), int(rotation_range[1]))
        self.width_range = (float(width_range[0]), float(width_range[1]))
        self.radius_range = (int(radius_range[0]), int(radius_range[1]))
        self.prob = _checks.check_range(fn, "prob", prob, 0.0, 1.0)
        self.min_fraction = _checks.check_range(fn, "min_fraction", min_fraction, 0.0, 1.0)
        self.max_tries = _checks.check_int(fn, "max_tries", max_tries, min_value=1)
        self.border = _checks.check_int(fn, "border", border, min_value=1)
        sample_echogains_params(0, **self._ranges())  # validates the ranges together

    def _ranges(self) -> dict[str, Any]:
        return {
            "depth_range": self.depth_range,
            "rotation_range": self.rotation_range,
            "width_range": self.width_range,
            "radius_range": self.radius_range,
            "prob": self.prob,
        }

    def forward(
        self,
        image: torch.Tensor,
        label: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> EchoGAINSSample:
        """Prepare (N, H, W) frames ``image`` (0 outside the sector) and ``label`` maps."""
        fn = "EchoGAINSAugment"
        _check_frames(fn, image, label)
        _checks.check_generator(fn, generator)
        n = image.shape[0]
        sector = image != 0
        out_img, out_lab = image.clone(), label.clone()
        pending = torch.ones(n, dtype=torch.bool, device=image.device)
        for _ in range(self.max_tries):
            params = sample_echogains_params(n, generator=generator, **self._ranges())
            img, lab = apply_echogains_params(image, label, params)
            ok = echogains_valid(lab, sector, min_fraction=self.min_fraction) & pending
            out_img = torch.where(ok[:, None, None], img, out_img)
            out_lab = torch.where(ok[:, None, None], lab, out_lab)
            pending = pending & ~ok
            if not bool(pending.any()):
                break
        out_img = out_img * sector
        return EchoGAINSSample(out_img, out_lab, echogains_keep_mask(out_img, border=self.border))

    def extra_repr(self) -> str:
        return (
            f"depth_range={self.depth_range}, rotation_range={self.rotation_range}, "
            f"width_range={self.width_range}, radius_range={self.radius_range}, "
            f"prob={self.prob}, min_fraction={self.min_fraction}, max_tries={self.max_tries}, "
            f"border={self.border}"
        )
