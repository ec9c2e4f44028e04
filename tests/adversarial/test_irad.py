"""IRAD: make_coord, the local implicit query against a naive float64 loop, the card's tests.

Official code: github.com/tsingqguo/irad, commit 5523e85 (utils.py make_coord,
models/liif.py query_rgb, models/samplenet.py SampleNetMLP, defense/sample_feature.py).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posneg.adversarial.irad import (
    IRAD,
    LocalImplicitImage,
    SampleNet,
    irad,
    local_implicit_query,
    make_cell,
    make_coord,
)


def test_make_coord_centres() -> None:
    c = make_coord(3, 4, flatten=False, dtype=torch.float64)
    assert c.shape == (3, 4, 2)
    for i in range(3):
        for j in range(4):
            assert c[i, j].tolist() == pytest.approx([(2 * i + 1) / 3 - 1, (2 * j + 1) / 4 - 1])
    assert make_coord(3, 4).shape == (12, 2)
    cell = make_cell(3, 4)
    assert cell[0].tolist() == pytest.approx([2 / 3, 2 / 4])


def _naive_query(
    feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, imnet: nn.Module
) -> torch.Tensor:
    b, k, h, w = feat.shape
    out = torch.zeros(b, coord.shape[1], 1, dtype=torch.float64)
    for n in range(b):
        for q in range(coord.shape[1]):
            cy, cx = coord[n, q].tolist()
            preds, areas = [], []
            for vy in (-1, 1):
                for vx in (-1, 1):
                    sy = min(max(cy + vy / h + 1e-6, -1 + 1e-6), 1 - 1e-6)
                    sx = min(max(cx + vx / w + 1e-6, -1 + 1e-6), 1 - 1e-6)
                    i, j = math.floor((sy + 1) * h / 2), math.floor((sx + 1) * w / 2)
                    vals = []
                    for ch in range(k):
                        for di in (-1, 0, 1):
                            for dj in (-1, 0, 1):
                                ii, jj = i + di, j + dj
                                inside = 0 <= ii < h and 0 <= jj < w
                                vals.append(feat[n, ch, ii, jj].item() if inside else 0.0)
                    ry = (cy - ((2 * i + 1) / h - 1)) * h
                    rx = (cx - ((2 * j + 1) / w - 1)) * w
                    inp = [*vals, ry, rx, cell[n, q, 0].item() * h, cell[n, q, 1].item() * w]
                    preds.append(imnet(torch.tensor([inp], dtype=torch.float64))[0, 0].item())
                    areas.append(abs(ry * rx) + 1e-9)
            tot = sum(areas)
            out[n, q, 0] = sum(p * a / tot for p, a in zip(preds, reversed(areas), strict=True))
    return out


def test_local_implicit_query_matches_naive_loop() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 2, 3, 4, generator=g, dtype=torch.float64)
    coord = torch.rand(2, 7, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1  # some outside
    cell = torch.full((2, 7, 2), 0.3, dtype=torch.float64)
    imnet = nn.Sequential(nn.Linear(9 * 2 + 4, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    got = local_implicit_query(feat, coord, cell, imnet)
    torch.testing.assert_close(got, _naive_query(feat, coord, cell, imnet))


def test_ensemble_weights_sum_to_one() -> None:
    """A constant imnet output c gives c everywhere: the four area weights sum to 1."""
    feat = torch.randn(1, 3, 5, 5)
    imnet = nn.Linear(9 * 3 + 4, 1)
    with torch.no_grad():
        imnet.weight.zero_()
        imnet.bias.fill_(2.5)
    coord = torch.rand(1, 40, 2) * 2 - 1
    out = local_implicit_query(feat, coord, torch.ones(1, 40, 2) * 0.4, imnet)
    torch.testing.assert_close(out, torch.full_like(out, 2.5))


def test_zero_offset_identity_reconstruction_returns_input() -> None:
    x = torch.rand(3, 1, 6, 6)
    recon = LocalImplicitImage(channels=1, encoder=nn.Identity(), identity=True)
    torch.testing.assert_close(irad(x, reconstruction=recon), x)
    grid = make_coord(6, 6).flip(-1).view(1, 6, 6, 2).expand(3, -1, -1, -1)
    torch.testing.assert_close(F.grid_sample(x, grid, mode="bilinear", align_corners=False), x)


def test_non_square_images_keep_orientation() -> None:
    """The official view(B, w, h, 3) would transpose non-square images; this reshape does not."""
    x = torch.rand(2, 3, 4, 7)
    recon = LocalImplicitImage(channels=3, encoder=nn.Identity(), identity=True)
    torch.testing.assert_close(irad(x, reconstruction=recon), x)


def test_samplenet_offsets_shape_and_frozen_encoder() -> None:
    recon = LocalImplicitImage(channels=1, features=4, hidden=(8,))
    sn = SampleNet(recon.encoder, hidden=(8,))
    assert all(not p.requires_grad for p in sn.encoder.parameters())
    assert sn.encoder is not recon.encoder
    x = torch.rand(2, 1, 5, 5)
    y, delta = irad(x, reconstruction=recon, sampler=sn, return_offsets=True)  # type: ignore[misc]
    assert delta.shape == (2, 25, 2) and y.shape == x.shape
    assert float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    d, mean_abs = sn(x, make_coord(5, 5).expand(2, -1, -1), make_cell(5, 5).expand(2, -1, -1))
    torch.testing.assert_close(mean_abs, d.abs().mean())
    y2 = IRAD(recon, sn)(x)
    torch.testing.assert_close(y2, y)


def test_offsets_move_the_reading_point() -> None:
    """An offset of one pixel (2/W in [-1, 1] units) reads the neighbouring pixel."""
    x = torch.rand(1, 1, 6, 6)
    recon = LocalImplicitImage(channels=1, encoder=nn.Identity(), identity=True)

    class Shift(nn.Module):
        def forward(
            self, x: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            d = torch.zeros_like(coord)
            d[..., 1] = 2 / 6
            return d, d.abs().mean()

    y = irad(x, reconstruction=recon, sampler=Shift())
    torch.testing.assert_close(y[..., :-1], ((x - 0.5) / 0.5 * 0.5 + 0.5)[..., 1:])  # type: ignore[index]


def test_errors() -> None:
    recon = LocalImplicitImage(channels=1, features=2, hidden=(4,))
    with pytest.raises(ValueError, match="irad: x"):
        irad(torch.rand(2, 8, 8), reconstruction=recon)

    class Wrong(nn.Module):
        def forward(self, x: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
            return coord

    with pytest.raises(ValueError, match="irad: reconstruction must return"):
        irad(torch.rand(2, 3, 8, 8), reconstruction=Wrong())
    with pytest.raises(ValueError, match="local_implicit_query: coord"):
        local_implicit_query(
            torch.rand(1, 2, 3, 3), torch.rand(1, 4, 3), torch.rand(1, 4, 3), nn.Identity()
        )
    with pytest.raises(ValueError, match="LocalImplicitImage: features"):
        LocalImplicitImage(features=0)
    with pytest.raises(TypeError, match="SampleNet: encoder"):
        SampleNet(3)  # type: ignore[arg-type]
