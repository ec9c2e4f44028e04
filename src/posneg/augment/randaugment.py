"""RandAugment with a different op choice and magnitude sign for every sample, in one call.

Cubuk, Zoph, Shlens, Le. RandAugment: Practical automated data augmentation with a reduced
search space. NeurIPS 2020 (CVPR-W 2020), arXiv 1909.13719.

Op list and magnitude table follow torchvision's ``RandAugment`` (the paper's 14 ops), not the
TensorFlow original; see :class:`RandAugment` for the differences.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import nn

from posneg import _checks, _rng
from posneg.augment import functional as AF
from posneg.augment.functional import Fill

CITATION = """
@inproceedings{cubuk2020randaugment,
  title     = {RandAugment: Practical Automated Data Augmentation with a Reduced Search Space},
  author    = {Cubuk, Ekin D. and Zoph, Barret and Shlens, Jonathon and Le, Quoc V.},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020},
  eprint    = {1909.13719},
  archivePrefix = {arXiv}
}
"""

#: The 14 ops, in torchvision's order; ``params.ops`` holds indices into this tuple.
OPS: tuple[str, ...] = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "auto_contrast",
    "equalize",
)
#: Ops whose magnitude is negated with probability 1/2.
SIGNED: frozenset[str] = frozenset(
    {
        "shear_x",
        "shear_y",
        "translate_x",
        "translate_y",
        "rotate",
        "brightness",
        "color",
        "contrast",
        "sharpness",
    }
)
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
_ENHANCE = ("brightness", "color", "contrast", "sharpness")
_INTERPOLATIONS = ("nearest", "bilinear")


def magnitude_table(num_bins: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """torchvision's RandAugment magnitude bins (unsigned), float64, one row per op.

    ``table[op][m]`` is the op's parameter at magnitude ``m``: shear factor ``linspace(0, 0.3)``;
    translate ``linspace(0, 150/331 * W)`` pixels (x) and ``* H`` (y); rotate
    ``linspace(0, 30)`` degrees; enhancers ``linspace(0, 0.9)`` (factor ``1 +/- v``); posterize
    bits ``8 - round(arange(n) / ((n - 1) / 4))``; solarize threshold ``linspace(255, 0)``
    (0..255 scale). Identity, auto-contrast and equalize have no parameter (zeros).
    """
    n = num_bins

    def lin(hi: float, lo: float = 0.0) -> torch.Tensor:
        return torch.linspace(lo, hi, n, dtype=torch.float64)

    zeros = torch.zeros(n, dtype=torch.float64)
    steps = torch.arange(n, dtype=torch.float64) / ((n - 1) / 4)
    return {
        "identity": zeros,
        "shear_x": lin(0.3),
        "shear_y": lin(0.3),
        "translate_x": lin(150.0 / 331.0 * width),
        "translate_y": lin(150.0 / 331.0 * height),
        "rotate": lin(30.0),
        "brightness": lin(0.9),
        "color": lin(0.9),
        "contrast": lin(0.9),
        "sharpness": lin(0.9),
        "posterize": 8.0 - torch.round(steps),
        "solarize": torch.linspace(255.0, 0.0, n, dtype=torch.float64),
        "auto_contrast": zeros,
        "equalize": zeros,
    }


@dataclass(frozen=True)
class RandAugmentParams:
    """One draw of RandAugment's randomness for a batch.

    Attributes:
        ops: (N, B) int64 indices into :data:`OPS`: round ``n`` applies ``OPS[ops[n, i]]`` to
            sample ``i``.
        values: (N, B) float32: the op's argument, signed and in the op's own units: shear
            factor, translate pixels (truncated to an integer, as torchvision), rotation
            degrees, enhance factor ``1 +/- v``, posterize bits, solarize threshold on the
            0..255 scale (rescaled to the image's range when applied), 0 for the rest.
    """

    ops: torch.Tensor
    values: torch.Tensor


def _check_hyper(
    fn: str, num_ops: object, magnitude: object, num_magnitude_bins: object
) -> tuple[int, int, int]:
    n_ops = _checks.check_int(fn, "num_ops", num_ops, min_value=0)
    bins = _checks.check_int(fn, "num_magnitude_bins", num_magnitude_bins, min_value=2)
    mag = _checks.check_int(fn, "magnitude", magnitude)
    if not 0 <= mag <= bins - 1:
        raise ValueError(
            f"{fn}: magnitude must be in [0, {bins - 1}] (num_magnitude_bins={bins}); got {mag}"
        )
    return n_ops, mag, bins


def sample_randaugment_params(
    batch: int,
    *,
    height: int,
    width: int,
    num_ops: int = 2,
    magnitude: int = 9,
    num_magnitude_bins: int = 31,
    random_magnitude: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> RandAugmentParams:
    """Draw per-sample RandAugment parameters: ``num_ops`` ops per sample, uniform with
    replacement over the 14 ops, each with its own random sign.

    Args:
        batch: B >= 0.
        height, width: image size (translate magnitudes scale with it).
        num_ops: N >= 0 ops applied in sequence to every sample.
        magnitude: bin index M in [0, num_magnitude_bins - 1] (torchvision's scale: its
            default 9 of 31 bins is about TF's M = 3 of 10).
        num_magnitude_bins: number of bins (31 in torchvision).
        random_magnitude: draw each op's bin uniformly in [0, M] per sample instead of using M
            (a common variant; the paper and torchvision use a fixed M).
        device: where the params live.
        generator: drawn from (None: torch's global RNG). Draw order: op indices (N, B),
            signs (N, B), then bins (N, B) when ``random_magnitude``.

    Returns:
        :class:`RandAugmentParams`.
    """
    fn = "sample_randaugment_params"
    b = _checks.check_int(fn, "batch", batch, min_value=0)
    h = _checks.check_int(fn, "height", height, min_value=1)
    w = _checks.check_int(fn, "width", width, min_value=1)
    n_ops, mag, bins = _check_hyper(fn, num_ops, magnitude, num_magnitude_bins)
    _checks.check_bool(fn, "random_magnitude", random_magnitude)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    ops = _rng.randint(len(OPS), (n_ops, b), device=dev, generator=generator)
    negate = _rng.randint(2, (n_ops, b), device=dev, generator=generator).bool()
    if random_magnitude:
        level = _rng.randint(mag + 1, (n_ops, b), device=dev, generator=generator)
    else:
        level = torch.full((n_ops, b), mag, dtype=torch.int64, device=dev)
    table = magnitude_table(bins, h, w)
    rows = torch.stack([table[name] for name in OPS]).to(dev)  # (14, bins)
    values = rows[ops, level]
    signed = torch.tensor([name in SIGNED for name in OPS], device=dev)[ops]
    values = torch.where(signed & negate, -values, values)
    is_translate = (ops == OPS.index("translate_x")) | (ops == OPS.index("translate_y"))
    values = torch.where(is_translate, torch.trunc(values), values)
    is_enhance = torch.zeros_like(ops, dtype=torch.bool)
    for name in _ENHANCE:
        is_enhance |= ops == OPS.index(name)
    values = torch.where(is_enhance, 1.0 + values, values)
    return RandAugmentParams(ops=ops, values=values.to(torch.float32))


def _geometric_matrices(
    ops: torch.Tensor, values: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """(K, 2, 3) inverse maps for samples whose op is geometric (rows chosen by op id)."""
    v = values.to(torch.float64)
    candidates = {
        "shear_x": AF.shear_matrix(v, "x"),
        "shear_y": AF.shear_matrix(v, "y"),
        "translate_x": AF.translate_matrix(v, "x"),
        "translate_y": AF.translate_matrix(v, "y"),
        "rotate": AF.rotation_matrix(v, height, width),
    }
    out = candidates["rotate"]
    for name in _GEOMETRIC[:-1]:
        out = torch.where((ops == OPS.index(name)).view(-1, 1, 1), candidates[name], out)
    return out


def _apply_round(
    x: torch.Tensor,
    out: torch.Tensor,
    ops: torch.Tensor,
    values: torch.Tensor,
    *,
    fill: Fill,
    interpolation: str,
) -> None:
    """One round from ``x`` into ``out`` (``out`` may be ``x``: the op groups are disjoint, so
    each group reads its own samples' round input before writing them): each sample gets its
    own op; samples are grouped per op (no loop over B)."""
    geo = torch.zeros_like(ops, dtype=torch.bool)
    for name in _GEOMETRIC:
        geo |= ops == OPS.index(name)
    idx = geo.nonzero().squeeze(1)
    if idx.numel() > 0:
        m = _geometric_matrices(ops[idx], values[idx], x.shape[2], x.shape[3])
        sub = AF.affine(x[idx], m, fill=fill, interpolation=interpolation)
        out.index_copy_(0, idx, sub)
    bound = 255.0 if x.dtype == torch.uint8 else 1.0
    for name in OPS:
        if name in _GEOMETRIC:
            continue
        idx = (ops == OPS.index(name)).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        if name == "identity":
            if out is not x:
                out.index_copy_(0, idx, x[idx])
            continue
        sub = x[idx]
        v = values[idx]
        if name == "auto_contrast":
            res = AF.auto_contrast(sub)
        elif name == "equalize":
            res = AF.equalize(sub)
        elif name == "posterize":
            res = AF.posterize(sub, v)
        elif name == "solarize":
            res = AF.solarize(sub, v * (bound / 255.0))
        elif name == "brightness":
            res = AF.brightness(sub, v)
        elif name == "color":
            res = AF.color(sub, v)
        elif name == "contrast":
            res = AF.contrast(sub, v)
        else:
            res = AF.sharpness(sub, v)
        out.index_copy_(0, idx, res)


def apply_randaugment(
    x: torch.Tensor,
    params: RandAugmentParams,
    *,
    fill: Fill = 0.0,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Apply drawn RandAugment params: round ``n`` gives sample ``i`` op ``params.ops[n, i]``.

    Deterministic: the same params give the same output. Samples are grouped by op with
    indexing and ``index_copy_`` into one output tensor (a loop over the 14 ops, none over the
    batch; no whole-batch copy per op); the five geometric ops of a round share one batched
    ``grid_sample``.

    Args:
        x: (B, C, H, W) uint8 (0..255) or float (0..1) images, C in {1, 3}.
        params: from :func:`sample_randaugment_params` with ``batch = B`` and this image size.
        fill: value for pixels moved in from outside (image scale; one value or C values).
        interpolation: ``"nearest"`` (torchvision's default) or ``"bilinear"``.

    Returns:
        (B, C, H, W) tensor of x's dtype on x's device.

    Raises:
        TypeError: x not uint8/float, params not RandAugmentParams.
        ValueError: x not 4-D, C not in {1, 3}, params shape not (N, B), bad interpolation.
    """
    fn = "apply_randaugment"
    AF.check_images(fn, x)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{fn}: x must have 1 or 3 channels; got C={x.shape[1]}")
    if not isinstance(params, RandAugmentParams):
        raise TypeError(f"{fn}: params must be RandAugmentParams; got {type(params).__name__}")
    _checks.check_choice(fn, "interpolation", interpolation, _INTERPOLATIONS)
    b = x.shape[0]
    if params.ops.dim() != 2 or params.ops.shape[1] != b or params.values.shape != params.ops.shape:
        raise ValueError(
            f"{fn}: params.ops and params.values must have shape (N, {b}); got "
            f"{tuple(params.ops.shape)} and {tuple(params.values.shape)}"
        )
    if params.ops.device != x.device:
        raise ValueError(
            f"{fn}: params are on {params.ops.device} but x is on {x.device}; "
            "move them to one device"
        )
    if params.ops.shape[0] == 0:
        return x.clone()
    # round 1 writes every sample of a fresh tensor; later rounds update it in place
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    src = x
    for n in range(params.ops.shape[0]):
        _apply_round(
            src, out, params.ops[n], params.values[n], fill=fill, interpolation=interpolation
        )
        src = out
    return out


class RandAugment(nn.Module):
    """RandAugment with per-sample op choice: every sample draws its own ``num_ops`` ops.

    Cubuk, Zoph, Shlens, Le. RandAugment: Practical automated data augmentation with a reduced
    search space. NeurIPS 2020, arXiv 1909.13719.

    For ``n = 1..num_ops`` every sample picks one of the 14 ops of :data:`OPS` uniformly with
    replacement and applies it always (no per-op probability), at magnitude bin ``magnitude``
    of ``num_magnitude_bins``, negating signed ops with probability 1/2
    (:func:`magnitude_table`). Unlike torchvision (one op per call for the whole batch), op,
    sign and (with ``random_magnitude``) bin differ per sample.

    Paper vs code: the op list and magnitude mapping are torchvision's (the paper's 14 ops,
    including identity). The TensorFlow original differs: 16 ops (adds Invert, Cutout,
    SolarizeAdd; no identity), magnitude on a 0..10 scale (torchvision's M is about 3x TF's:
    default 9/30 is ~ TF 3/10), posterize and solarize that get *weaker* as M grows, enhance
    factors ``1.8 M/10 + 0.1`` without sign (always brightening for M > 5), fill 128.
    Following torchvision, solarize at M = 0 still inverts pixels equal to 255 (threshold 255)
    and translate offsets are truncated to whole pixels.

    Args:
        num_ops: ops per sample (N >= 0).
        magnitude: bin index in [0, num_magnitude_bins - 1].
        num_magnitude_bins: >= 2.
        random_magnitude: draw each bin uniformly in [0, magnitude] per sample and op.
        fill: value for pixels moved in from outside (image scale).
        interpolation: "nearest" or "bilinear" for the geometric ops.

    Example:
        >>> import torch
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> g = torch.Generator().manual_seed(0)
        >>> RandAugment(num_ops=2, magnitude=9)(x, generator=g).shape
        torch.Size([8, 3, 32, 32])
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        *,
        random_magnitude: bool = False,
        fill: float | list[float] = 0.0,
        interpolation: str = "nearest",
    ) -> None:
        super().__init__()
        fn = "RandAugment"
        self.num_ops, self.magnitude, self.num_magnitude_bins = _check_hyper(
            fn, num_ops, magnitude, num_magnitude_bins
        )
        self.random_magnitude = _checks.check_bool(fn, "random_magnitude", random_magnitude)
        self.interpolation = _checks.check_choice(
            fn, "interpolation", interpolation, _INTERPOLATIONS
        )
        if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
            self.fill: float | list[float] = float(fill)
        elif isinstance(fill, (list, tuple)):
            self.fill = [float(_checks.check_real(fn, "fill", v)) for v in fill]
        else:
            raise TypeError(f"{fn}: fill must be a number or a list; got {type(fill).__name__}")

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a (B, C, H, W) uint8 or float batch; returns the same shape and dtype."""
        fn = "RandAugment"
        AF.check_images(fn, x)
        _checks.check_generator(fn, generator, x.device)
        params = sample_randaugment_params(
            x.shape[0],
            height=x.shape[2],
            width=x.shape[3],
            num_ops=self.num_ops,
            magnitude=self.magnitude,
            num_magnitude_bins=self.num_magnitude_bins,
            random_magnitude=self.random_magnitude,
            device=x.device,
            generator=generator,
        )
        return apply_randaugment(x, params, fill=self.fill, interpolation=self.interpolation)

    def extra_repr(self) -> str:
        return (
            f"num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"num_magnitude_bins={self.num_magnitude_bins}, "
            f"random_magnitude={self.random_magnitude}, fill={self.fill!r}, "
            f"interpolation={self.interpolation!r}"
        )
