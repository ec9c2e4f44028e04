"""IRAD in full: an implicit representation of the image read at SampleNet-predicted coordinates.

Cao, Li, Cao, Tsang, Liu, Guo. IRAD: Implicit Representation-driven Image Resampling against
Adversarial Attacks. ICLR 2024, arXiv 2310.11890.

The defence (``SampleFeatureMLP.forward`` of the official code) re-renders an input image
``x`` in ``[0, 1]``, ``(B, C, H, W)``, before the unchanged classifier sees it:

    coord = make_coord(H, W)                      (HW, 2) pixel centres (2k + 1)/n - 1, (row, col)
    cell  = (2 / H, 2 / W) for every query
    delta = SampleNet(x, coord, cell)             (B, HW, 2) per-pixel offsets, unbounded
    y     = LIIF((x - 0.5) / 0.5, coord + delta, cell) * 0.5 + 0.5, clamped to [0, 1]

Both networks decode with the same local implicit function (:func:`local_implicit_query`,
LIIF's ``query_rgb``): the encoder's feature map is unfolded 3x3; for each query coordinate the
four nearest feature cells (the query shifted by ``(+-r_h, +-r_w)``, ``r = 1/n`` half a cell,
plus ``1e-6``, clamped inside ``(-1, 1)``) are read with nearest ``grid_sample``; an MLP maps
``[feature, (q - c) * (h, w), cell * (h, w)]`` to a value; the four values are blended with the
area of the rectangle to the *diagonally opposite* cell centre (``|dy dx|`` of that neighbour,
plus 1e-9), normalised to sum to 1 (bilinear-like weights). :class:`LocalImplicitImage`
outputs C image channels; :class:`SampleNet` outputs 2 offsets and uses a *frozen copy of the
reconstruction's encoder fed the [0, 1] image* (the official code's asymmetry, kept here).

Checked against github.com/tsingqguo/irad, commit 5523e85 (2024-04-17), on 2026-12-06:
``utils.py`` ``make_coord``, ``models/liif.py`` ``query_rgb`` (with ``feat_unfold``,
``local_ensemble``, ``cell_decode`` on), ``models/samplenet.py`` ``SampleNetMLP``,
``models/mlp.py``, ``robustbench/model_zoo/defense/sample_feature.py``. Deliberate
differences: sizes (the official encoder is EDSR/RDN with 4 x 256 MLPs; here a 2-layer conv
encoder and a small MLP so that it trains on CPU; pass your own modules for other sizes);
the output is reshaped ``(B, H, W, C) -> (B, C, H, W)`` where the official ``view(B, w, h, 3)``
swaps H and W (equal for the square images it was run on; tested). The training code of both
networks is not released; ``posneg.bench._adversarial_irad`` trains them as the paper
describes (L1 adversarial -> clean for the reconstruction, then the classifier's
cross-entropy on defended adversarial images + ``penalty * mean|delta|`` for SampleNet).

IRAD's basic resampling (fixed or uniform shifts, bilinear/nearest) is
:func:`posneg.augment.resample.resample`; this module is the learned version.

Example:
    >>> import torch
    >>> from posneg.adversarial.irad import IRAD, LocalImplicitImage, SampleNet
    >>> recon = LocalImplicitImage(channels=1, features=8, hidden=(16,))
    >>> defence = IRAD(recon, SampleNet(recon.encoder, hidden=(16,)))
    >>> defence(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = [
    "IRAD",
    "LocalImplicitImage",
    "SampleNet",
    "irad",
    "local_implicit_query",
    "make_cell",
    "make_coord",
]

CITATION = """
@inproceedings{cao2024irad,
  title     = {{IRAD}: Implicit Representation-driven Image Resampling against Adversarial
               Attacks},
  author    = {Cao, Yue and Li, Tianlin and Cao, Xiaofeng and Tsang, Ivor and Liu, Yang and
               Guo, Qing},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024},
  eprint    = {2310.11890},
  archivePrefix = {arXiv}
}
"""

_ENSEMBLE_EPS = 1e-6
_AREA_EPS = 1e-9


def make_coord(
    height: int,
    width: int,
    *,
    flatten: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Pixel-centre coordinates in ``[-1, 1]``: ``(2k + 1)/n - 1``, last axis ``(row, col)``.

    Returns ``(H*W, 2)`` (``flatten=True``) or ``(H, W, 2)``, as the official ``make_coord``.
    """
    fn = "make_coord"
    h = _checks.check_int(fn, "height", height, min_value=1)
    w = _checks.check_int(fn, "width", width, min_value=1)
    rows = (2 * torch.arange(h, device=device, dtype=torch.float64) + 1) / h - 1
    cols = (2 * torch.arange(w, device=device, dtype=torch.float64) + 1) / w - 1
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).to(dtype)
    return grid.reshape(-1, 2) if flatten else grid


def make_cell(
    height: int,
    width: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The query cell size ``(2/H, 2/W)`` for every pixel: ``(H*W, 2)``."""
    cell = torch.ones(height * width, 2, device=device, dtype=dtype)
    cell[:, 0] *= 2 / height
    cell[:, 1] *= 2 / width
    return cell


def _nearest(t: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """Nearest ``grid_sample`` of ``t`` (B, K, h, w) at ``coord`` (B, Q, 2) -> (B, Q, K)."""
    out = F.grid_sample(t, coord.flip(-1).unsqueeze(1), mode="nearest", align_corners=False)
    return out[:, :, 0, :].permute(0, 2, 1)


def local_implicit_query(
    feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, imnet: nn.Module
) -> torch.Tensor:
    """LIIF's ``query_rgb`` (feature unfolding, local ensemble, cell decoding).

    Args:
        feat: encoder features ``(B, K, h, w)``.
        coord: query coordinates ``(B, Q, 2)`` in ``[-1, 1]``, ``(row, col)``.
        cell: query cell sizes ``(B, Q, 2)`` in the same units.
        imnet: MLP from ``9K + 4`` inputs to the output size.

    Returns:
        ``(B, Q, out)``: the area-weighted blend of the four neighbouring cells' predictions.
    """
    fn = "local_implicit_query"
    _checks.check_float(fn, "feat", feat)
    if feat.dim() != 4:
        raise ValueError(f"{fn}: feat must have shape (B, K, h, w); got {tuple(feat.shape)}")
    b, k, h, w = feat.shape
    for name, t in (("coord", coord), ("cell", cell)):
        _checks.check_float(fn, name, t)
        if t.dim() != 3 or t.shape[0] != b or t.shape[2] != 2:
            raise ValueError(f"{fn}: {name} must have shape ({b}, Q, 2); got {tuple(t.shape)}")
    if cell.shape != coord.shape:
        raise ValueError(f"{fn}: cell must have the shape of coord {tuple(coord.shape)}")
    out_dtype = feat.dtype
    # geometry (shifts of 1e-6, areas + 1e-9) needs float32 at least; the MLP runs in feat's dtype
    wd = torch.promote_types(torch.promote_types(coord.dtype, feat.dtype), torch.float32)
    coord, cell = coord.to(wd), cell.to(wd)
    feat = F.unfold(feat.to(wd), 3, padding=1).view(b, k * 9, h, w)
    rh, rw = 1.0 / h, 1.0 / w
    feat_coord = make_coord(h, w, flatten=False, device=feat.device, dtype=wd)
    feat_coord = feat_coord.permute(2, 0, 1).unsqueeze(0).expand(b, 2, h, w)
    scale = torch.tensor([h, w], device=feat.device, dtype=wd)
    rel_cell = cell * scale
    preds, areas = [], []
    for vy in (-1, 1):
        for vx in (-1, 1):
            shift = torch.tensor(
                [vy * rh + _ENSEMBLE_EPS, vx * rw + _ENSEMBLE_EPS], device=feat.device, dtype=wd
            )
            c = (coord + shift).clamp(-1 + 1e-6, 1 - 1e-6)
            rel = (coord - _nearest(feat_coord, c)) * scale
            inp = torch.cat([_nearest(feat, c), rel, rel_cell], dim=-1).to(out_dtype)
            pred = imnet(inp.reshape(-1, inp.shape[-1])).view(b, coord.shape[1], -1)
            preds.append(pred.to(wd))
            areas.append((rel[..., 0] * rel[..., 1]).abs() + _AREA_EPS)
    total = torch.stack(areas).sum(0)
    areas = [areas[3], areas[2], areas[1], areas[0]]  # each neighbour weighted by its opposite
    out = preds[0] * (areas[0] / total).unsqueeze(-1)
    for pred, area in zip(preds[1:], areas[1:], strict=True):
        out = out + pred * (area / total).unsqueeze(-1)
    return out.to(out_dtype)


def _mlp(in_dim: int, out_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.ReLU()]
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


def _encoder(channels: int, features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, features, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(features, features, 3, padding=1),
    )


class LocalImplicitImage(nn.Module):
    """LIIF: a conv encoder and an MLP decoded by :func:`local_implicit_query` (C outputs).

    ``forward(x, coord, cell) -> (B, Q, C)`` with ``x`` in the range it was trained on (IRAD:
    ``[-1, 1]``). ``encoder`` and ``imnet`` may be given (``imnet=None`` with ``identity=True``
    reads the feature map by nearest lookup, LIIF's ``imnet is None`` branch).
    """

    def __init__(
        self,
        *,
        channels: int = 3,
        features: int = 32,
        hidden: Sequence[int] = (64, 64),
        encoder: nn.Module | None = None,
        identity: bool = False,
    ) -> None:
        super().__init__()
        fn = "LocalImplicitImage"
        self.channels = _checks.check_int(fn, "channels", channels, min_value=1)
        self.features = _checks.check_int(fn, "features", features, min_value=1)
        self.hidden = tuple(_checks.check_int(fn, "hidden", v, min_value=1) for v in hidden)
        self.identity = _checks.check_bool(fn, "identity", identity)
        self.encoder = encoder if encoder is not None else _encoder(self.channels, self.features)
        self.imnet = (
            None if self.identity else _mlp(9 * self.features + 4, self.channels, self.hidden)
        )

    def forward(self, x: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        feat = self.encoder(x)
        if self.imnet is None:
            return _nearest(feat, coord)
        return local_implicit_query(feat, coord, cell, self.imnet)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, features={self.features}, hidden={self.hidden}"


class SampleNet(nn.Module):
    """SampleNetMLP: per-pixel 2-D coordinate offsets from a frozen copy of a LIIF encoder.

    ``forward(x, coord, cell) -> (delta (B, Q, 2), mean |delta|)``, ``x`` in ``[0, 1]``.
    """

    def __init__(
        self, encoder: nn.Module, *, features: int | None = None, hidden: Sequence[int] = (64, 64)
    ) -> None:
        super().__init__()
        fn = "SampleNet"
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"{fn}: encoder must be an nn.Module; got {type(encoder).__name__}")
        self.encoder = copy.deepcopy(encoder)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        if features is None:
            convs = [m for m in self.encoder.modules() if isinstance(m, nn.Conv2d)]
            if not convs:
                raise ValueError(
                    f"{fn}: features must be given for an encoder without Conv2d layers"
                )
            features = convs[-1].out_channels
        self.features = _checks.check_int(fn, "features", features, min_value=1)
        self.hidden = tuple(_checks.check_int(fn, "hidden", v, min_value=1) for v in hidden)
        self.imnet = _mlp(9 * self.features + 4, 2, self.hidden)

    def forward(
        self, x: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        delta = local_implicit_query(self.encoder(x), coord, cell, self.imnet)
        return delta, delta.abs().mean()

    def extra_repr(self) -> str:
        return f"features={self.features}, hidden={self.hidden}"


def irad(
    x: torch.Tensor,
    *,
    reconstruction: nn.Module,
    sampler: nn.Module | None = None,
    return_offsets: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Defend ``x`` (B, C, H, W) in ``[0, 1]``: reconstruct it at ``coord + SampleNet(x)``.

    Args:
        x: images in ``[0, 1]``.
        reconstruction: a :class:`LocalImplicitImage` (or any ``(x, coord, cell) -> (B, Q, C)``)
            trained on ``[-1, 1]`` inputs.
        sampler: a :class:`SampleNet` (``None``: no offsets, the reconstruction alone).
        return_offsets: also return the offsets ``(B, HW, 2)``.

    Returns:
        The defended images ``(B, C, H, W)`` (differentiable; wrap in ``no_grad`` for inference),
        and the offsets when asked.
    """
    fn = "irad"
    _checks.check_float(fn, "x", x)
    if x.dim() != 4:
        raise ValueError(f"{fn}: x must have shape (B, C, H, W); got {tuple(x.shape)}")
    if not isinstance(reconstruction, nn.Module):
        raise TypeError(
            f"{fn}: reconstruction must be an nn.Module; got {type(reconstruction).__name__}"
        )
    b, c, h, w = x.shape
    coord = make_coord(h, w, device=x.device, dtype=x.dtype).unsqueeze(0).expand(b, -1, -1)
    cell = make_cell(h, w, device=x.device, dtype=x.dtype).unsqueeze(0).expand(b, -1, -1)
    delta = torch.zeros_like(coord)
    if sampler is not None:
        delta = sampler(x, coord, cell)[0]
    out = reconstruction((x - 0.5) / 0.5, coord + delta, cell)
    if out.shape != (b, h * w, c):
        raise ValueError(
            f"{fn}: reconstruction must return ({b}, {h * w}, {c}); got {tuple(out.shape)}"
        )
    y = (out * 0.5 + 0.5).clamp(0, 1).view(b, h, w, c).permute(0, 3, 1, 2).contiguous()
    return (y, delta) if return_offsets else y


class IRAD(nn.Module):
    """The defence as a module: ``IRAD(reconstruction, sampler)(x) -> defended x``."""

    def __init__(self, reconstruction: nn.Module, sampler: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(reconstruction, nn.Module):
            raise TypeError(
                f"IRAD: reconstruction must be an nn.Module; got {type(reconstruction).__name__}"
            )
        self.reconstruction = reconstruction
        self.sampler = sampler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, irad(x, reconstruction=self.reconstruction, sampler=self.sampler))
