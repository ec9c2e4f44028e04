"""Tests for posneg.losses.pcl_sr (PCL-SR, Wu, Jiang, Liu, IEEE TNNLS 2023, arXiv 2111.13924).

Transcriptions are of Aitical/PCL-SISR at commit ba4cbb770f921b4d859547c9edec27c8ec89cb65:
``src/loss/adversarial.py`` (``infoNCE``, ``nce``, ``contrastive_D_loss``),
``src/loss/discriminator.py`` (``Discriminator``), ``src/trainer.py`` and
``src/data/div2k.py`` (``RandomDegrad``). References: Pillow's ``ImageEnhance.Sharpness`` (the
kernel kornia's ``sharpness`` copies) and OpenCV's ``GaussianBlur``.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posneg.losses.pcl_sr import (
    PCLSRDualContrastiveLoss,
    PCLSREmbedding,
    PCLSRLoss,
    PCLSRViews,
    apply_pcl_sr_views,
    gaussian_blur,
    haar_highpass,
    pcl_sr_dual_contrastive_loss,
    pcl_sr_loss,
    pcl_sr_similarity,
    quantize,
    sample_pcl_sr_params,
    sharpness,
)

D64 = torch.float64


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- formula (naive loops)


def _dwt1d(v: list[float]) -> tuple[list[float], list[float]]:
    """pywt's haar analysis of an even-length signal: cA, cD (dec_lo = [1, 1]/r2,
    dec_hi = [-1, 1]/r2 convolved, i.e. cD[n] = (v[2n] - v[2n+1]) / r2)."""
    r2 = math.sqrt(2.0)
    lo = [(v[2 * n] + v[2 * n + 1]) / r2 for n in range(len(v) // 2)]
    hi = [(v[2 * n] - v[2 * n + 1]) / r2 for n in range(len(v) // 2)]
    return lo, hi


def _naive_haar(x: torch.Tensor) -> torch.Tensor:
    """pytorch_wavelets' afb2d order: rows (width) first, then columns (height); the detail bands
    are (lo_w, hi_h), (hi_w, lo_h), (hi_w, hi_h); cat band-major."""
    b, c, h, w = x.shape
    out = torch.zeros(b, 3 * c, h // 2, w // 2, dtype=D64)
    for i in range(b):
        for ch in range(c):
            img = x[i, ch].tolist()
            rows = [_dwt1d(r) for r in img]  # per row: (lo_w, hi_w)
            for band, (wsel, hsel) in enumerate(((0, 1), (1, 0), (1, 1))):
                cols = [[rows[r][wsel][q] for r in range(h)] for q in range(w // 2)]
                for q, col in enumerate(cols):
                    res = _dwt1d(col)[hsel]
                    for p, val in enumerate(res):
                        out[i, band * c + ch, p, q] = val
    return out


def test_haar_highpass_matches_separable_dwt_loop() -> None:
    x = torch.rand(2, 3, 6, 8, generator=_g(), dtype=D64)
    torch.testing.assert_close(haar_highpass(x), _naive_haar(x))


def _naive_sim(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    out = []
    for i in range(a.shape[0]):
        acc, n = 0.0, 0
        for p in range(a.shape[2]):
            for q in range(a.shape[3]):
                u, v = a[i, :, p, q].tolist(), b[i, :, p, q].tolist()
                nu = max(math.sqrt(sum(t * t for t in u)), 1e-12)
                nv = max(math.sqrt(sum(t * t for t in v)), 1e-12)
                acc += sum(s * t for s, t in zip(u, v, strict=True)) / (nu * nv)
                n += 1
        out.append(acc / n)
    return out


def _naive_loss(f_sr: torch.Tensor, f_pos: list[torch.Tensor], f_neg: list[torch.Tensor]) -> float:
    negs = [_naive_sim(f_sr, f) for f in f_neg]
    total = 0.0
    for fp in f_pos:
        pos = _naive_sim(f_sr, fp)
        ce = 0.0
        for i in range(f_sr.shape[0]):
            row = [pos[i]] + [n[i] for n in negs]
            ce += math.log(sum(math.exp(v) for v in row)) - pos[i]
        total += ce / f_sr.shape[0]
    return total / len(f_pos)


def test_loss_matches_naive_loop() -> None:
    g = _g(1)
    sr = torch.randn(3, 4, 4, 6, generator=g, dtype=D64)
    pos = torch.randn(2, 3, 4, 4, 6, generator=g, dtype=D64)
    neg = torch.randn(4, 3, 4, 4, 6, generator=g, dtype=D64)
    got = pcl_sr_loss(sr, pos, neg, embed=lambda t: t)
    want = _naive_loss(sr, list(pos), list(neg))
    assert got.item() == pytest.approx(want, rel=1e-12, abs=1e-12)
    # a list of layers: the mean of the per-layer losses
    two = pcl_sr_loss(sr, pos, neg, embed=lambda t: [t, t.flip(1) * t])
    want2 = 0.5 * (want + _naive_loss(sr.flip(1) * sr, [p.flip(1) * p for p in pos],
                                      [n.flip(1) * n for n in neg]))  # fmt: skip
    assert two.item() == pytest.approx(want2, rel=1e-12)


def test_similarity_matches_naive_loop() -> None:
    g = _g(2)
    a, b = (
        torch.randn(2, 5, 3, 3, generator=g, dtype=D64),
        torch.randn(2, 5, 3, 3, generator=g, dtype=D64),
    )
    np.testing.assert_allclose(pcl_sr_similarity(a, b).numpy(), _naive_sim(a, b), rtol=1e-12)


def _naive_dual(r: list[float], f: list[float]) -> float:
    def half(t1: list[float], t2: list[float]) -> float:
        tot = 0.0
        for v in t1:
            row = [v, *t2]
            tot += math.log(sum(math.exp(u) for u in row)) - v
        return tot / len(t1)

    return half(r, f) + half([-v for v in f], [-v for v in r])


def test_dual_contrastive_matches_naive_loop() -> None:
    g = _g(3)
    r, f = torch.randn(3, 4, generator=g, dtype=D64), torch.randn(5, 4, generator=g, dtype=D64)
    got = pcl_sr_dual_contrastive_loss(r, f)
    assert got.item() == pytest.approx(
        _naive_dual(r.flatten().tolist(), f.flatten().tolist()), rel=1e-12
    )


def _naive_sharp(x: torch.Tensor, factor: float) -> torch.Tensor:
    """kornia.enhance.sharpness written out pixel by pixel."""
    out = x.clone()
    _, c, h, w = x.shape
    for ch in range(c):
        for p in range(h):
            for q in range(w):
                if 0 < p < h - 1 and 0 < q < w - 1:
                    s = sum(
                        x[0, ch, p + dp, q + dq].item() for dp in (-1, 0, 1) for dq in (-1, 0, 1)
                    )
                    deg = min(max((s + 4 * x[0, ch, p, q].item()) / 13.0, 0.0), 1.0)
                else:
                    deg = x[0, ch, p, q].item()
                v = deg + factor * (x[0, ch, p, q].item() - deg)
                if not 0 <= factor <= 1:
                    v = min(max(v, 0.0), 1.0)
                out[0, ch, p, q] = v
    return out


@pytest.mark.parametrize("factor", [0.0, 0.5, 0.8, 1.7, 3.0])
def test_sharpness_matches_naive_loop(factor: float) -> None:
    x = torch.rand(1, 2, 5, 6, generator=_g(4), dtype=D64)
    torch.testing.assert_close(sharpness(x, factor), _naive_sharp(x, factor))


def _naive_blur(x: torch.Tensor, k: tuple[int, int], s: tuple[float, float]) -> torch.Tensor:
    def kern(n: int, sig: float) -> list[float]:
        v = [math.exp(-((i - n // 2) ** 2) / (2 * sig * sig)) for i in range(n)]
        return [t / sum(v) for t in v]

    def refl(i: int, n: int) -> int:
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    kh, kw = kern(k[0], s[0]), kern(k[1], s[1])
    _, c, h, w = x.shape
    out = torch.zeros_like(x)
    for ch in range(c):
        for p in range(h):
            for q in range(w):
                acc = 0.0
                for a, wa in enumerate(kh):
                    for b, wb in enumerate(kw):
                        pp, qq = refl(p + a - k[0] // 2, h), refl(q + b - k[1] // 2, w)
                        acc += wa * wb * x[0, ch, pp, qq].item()
                out[0, ch, p, q] = acc
    return out


def test_gaussian_blur_matches_naive_loop() -> None:
    x = torch.rand(1, 2, 7, 9, generator=_g(5), dtype=D64)
    torch.testing.assert_close(
        gaussian_blur(x, (5, 3), (1.3, 0.4)), _naive_blur(x, (5, 3), (1.3, 0.4))
    )


# --------------------------------------------------------------------------- references


def test_sharpness_matches_pillow() -> None:
    """PIL ``ImageEnhance.Sharpness``: SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]]/13, borders copied,
    blend; PIL rounds the degenerate and the result to uint8 (so 2/255 tolerance)."""
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].to(D64) / 255.0
    for factor in (0.5, 1.3, 3.0):
        ref = np.asarray(ImageEnhance.Sharpness(Image.fromarray(arr)).enhance(factor))
        ref_t = torch.from_numpy(ref.copy()).permute(2, 0, 1)[None].to(D64) / 255.0
        torch.testing.assert_close(sharpness(x, factor), ref_t, atol=2.0 / 255 + 1e-9, rtol=0)


def test_gaussian_blur_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(1).random((13, 11)).astype(np.float64)
    # cv2 ksize is (width, height); BORDER_REFLECT_101 is torch's "reflect"
    ref = cv2.GaussianBlur(img, (3, 7), sigmaX=0.8, sigmaY=1.6, borderType=cv2.BORDER_REFLECT_101)
    got = gaussian_blur(torch.from_numpy(img)[None, None], (7, 3), (1.6, 0.8))[0, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-10)


# --------------------------------------------------------------------------- transcriptions


class _ReleasedDiscriminator(nn.Module):
    """``Discriminator`` (use_wavelet, cs="cat", patchD) as released, in-place LeakyReLU kept."""

    def __init__(self, n_colors: int) -> None:
        super().__init__()

        def _block(i: int, o: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(i, o, 3, padding=1, stride=stride, bias=False), nn.BatchNorm2d(o)
            )

        in_channels, out_channels, depth = 9 if n_colors == 3 else 3 * n_colors, 64, 7
        m = [_block(in_channels, out_channels), nn.LeakyReLU(negative_slope=0.2, inplace=True)]
        for i in range(depth):
            in_channels = out_channels
            if i % 2 == 1:
                stride = 1
                out_channels *= 2
            else:
                stride = 2
            m.append(_block(in_channels, out_channels, stride=stride))
            m.append(nn.LeakyReLU(negative_slope=0.2, inplace=True))
        self.features = nn.Sequential(*m)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), nn.Conv2d(out_channels, 1, kernel_size=(1, 1))
        )

    def forward(
        self, x: torch.Tensor, before_relu: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = haar_highpass(x)  # filter_wavelet (checked against the DWT loop above)
        all_feature = []
        x_in = x
        for layer in self.features:
            x_in = layer(x_in)
            if before_relu and not isinstance(layer, nn.LeakyReLU):
                all_feature.append(x_in)
            elif not before_relu and isinstance(layer, nn.LeakyReLU):
                all_feature.append(x_in)
        return self.classifier(x_in), all_feature


def _copy_weights(released: _ReleasedDiscriminator, ours: PCLSREmbedding) -> None:
    blocks = [m for m in released.features if isinstance(m, nn.Sequential)]
    for src, dst in zip(blocks, ours.blocks, strict=True):
        dst.load_state_dict(src.state_dict())
    ours.head.load_state_dict(released.classifier.state_dict())


def _pair_of_nets() -> tuple[_ReleasedDiscriminator, PCLSREmbedding, PCLSREmbedding]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rel = _ReleasedDiscriminator(3).double()
        pre = PCLSREmbedding(3).double()
        post = PCLSREmbedding(3, before_relu=False).double()
    _copy_weights(rel, pre)
    _copy_weights(rel, post)
    return rel, pre, post


def test_embedding_architecture_matches_released_discriminator() -> None:
    rel, pre, _ = _pair_of_nets()
    assert [tuple(b[0].weight.shape) for b in pre.blocks] == [
        tuple(m[0].weight.shape) for m in rel.features if isinstance(m, nn.Sequential)
    ]
    assert [b[0].stride for b in pre.blocks] == [
        (1, 1),
        (2, 2),
        (1, 1),
        (2, 2),
        (1, 1),
        (2, 2),
        (1, 1),
        (2, 2),
    ]
    x = torch.rand(2, 3, 32, 32, generator=_g(6), dtype=D64)
    out = pre(x)
    assert out.shape == (2, 256, 4, 4)  # cl_layer 4: 256 channels at H/8
    logits, _ = rel(x)
    torch.testing.assert_close(pre.patch_logits(x), logits.flatten(1))


def test_released_before_relu_features_are_post_activation() -> None:
    """Released quirk: the in-place LeakyReLU overwrites the stored BN outputs, so the released
    ``--before_relu`` features equal post-activation ones (``before_relu=False`` here); posneg's
    default ``before_relu=True`` is the true pre-activation (a deliberate difference)."""
    rel, pre, post = _pair_of_nets()
    x = torch.rand(2, 3, 32, 32, generator=_g(7), dtype=D64)
    with torch.no_grad():
        _, feats = rel(x, before_relu=True)
    torch.testing.assert_close(feats[4], post(x))
    assert (feats[4] >= 0).float().mean() < 1 and not torch.allclose(feats[4], pre(x))
    assert torch.allclose(F.leaky_relu(pre(x), 0.2), feats[4])


def _released_infonce(
    dis: nn.Module, sr: torch.Tensor, hr: list[torch.Tensor], lr: list[torch.Tensor]
) -> torch.Tensor:
    """``Adversarial.infoNCE`` + ``nce`` (InfoNCE, cl_layer "4", pos_id = neg_id = -1, no shuffle);
    ``fake_features`` come from ``self.dis(fake)`` under ``no_grad`` in ``forward``."""
    with torch.no_grad():
        sr_features = dis(sr)[1]
    b, _c, h, w = hr[0].shape
    n_hr, n_lr = [], []
    with torch.no_grad():
        for s_hr in hr:
            n_hr.append(dis(s_hr)[1])
        for s_lr in lr:
            if s_lr.shape[-2:] != (h, w):
                s_lr = F.interpolate(s_lr, size=(h, w), align_corners=True, mode="bicubic").clamp(
                    0, 1
                )
            n_lr.append(dis(s_lr)[1])
    idx = 4
    sr_layer = sr_features[idx]
    neg_logits = [
        torch.sum(F.normalize(sr_layer, dim=1) * F.normalize(f[idx], dim=1), dim=1)
        .mean(dim=[-1, -2])
        .unsqueeze(1)
        for f in n_lr
    ]
    loss = 0
    for f in n_hr:
        pos = (
            torch.sum(F.normalize(sr_layer, dim=1) * F.normalize(f[idx], dim=1), dim=1)
            .mean(dim=[-1, -2])
            .unsqueeze(1)
        )
        logits = torch.cat([pos, *neg_logits], dim=1)
        loss = loss + F.cross_entropy(logits, torch.zeros(b, dtype=torch.long))
    return loss / len(n_hr)


def test_loss_matches_released_infonce_in_parity_mode() -> None:
    """Views from the released recipe (LR at LR size, upsampled inside infoNCE), features through
    the released discriminator; posneg gets the upsampled LR from apply_pcl_sr_views."""
    rel, _, post = _pair_of_nets()
    rel.eval()
    post.eval()
    g = _g(8)
    hr = torch.rand(2, 3, 32, 32, generator=g, dtype=D64)
    lr = F.avg_pool2d(hr, 2)
    sr = torch.rand(2, 3, 32, 32, generator=g, dtype=D64, requires_grad=True)
    params = sample_pcl_sr_params(2, num_copies=3, generator=g)
    views = apply_pcl_sr_views(hr, lr, params)
    want = _released_infonce(rel, sr, list(views.positives), [lr, *list(views.negatives[1:])])
    got = pcl_sr_loss(sr, views.positives, views.negatives, embed=post, detach_sr_features=True)
    assert got.item() == pytest.approx(want.item(), rel=1e-10)
    # paper mode: the same value, now with a gradient to sr
    paper = pcl_sr_loss(sr, views.positives, views.negatives, embed=post)
    assert paper.item() == pytest.approx(want.item(), rel=1e-10)


def test_dual_contrastive_matches_released_contrastive_D_loss() -> None:
    def released(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        real_logits, fake_logits = real_logits.reshape(-1), fake_logits.reshape(-1)

        def loss_half(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
            t = torch.cat((t1[:, None], t2[None, :].expand(t1.shape[0], -1)), dim=-1)
            return F.cross_entropy(t, torch.zeros(t1.shape[0], dtype=torch.long))

        return loss_half(real_logits, fake_logits) + loss_half(-fake_logits, -real_logits)

    g = _g(9)
    r = torch.randn(4 * 2, 1, 4, 4, generator=g, dtype=D64) * 3
    f = torch.randn(4 * 2, 1, 4, 4, generator=g, dtype=D64) * 3
    torch.testing.assert_close(pcl_sr_dual_contrastive_loss(r, f), released(r, f))


def test_params_follow_released_draws() -> None:
    """RandomDegrad: kx, ky = randint(1, 5) * 2 + 1, sx, sy = U * 1.9 + 0.1 (one draw per copy,
    shared by the batch); trainer: sharp = U * 2.5 + 0.5 per image."""
    p = sample_pcl_sr_params(5, num_copies=400, generator=_g(10))
    assert p.sharp_factors.shape == (400, 5) and p.kernel_sizes.shape == (400, 2)
    assert set(p.kernel_sizes.unique().tolist()) == {3, 5, 7, 9, 11}
    assert 0.1 <= p.sigmas.min() and p.sigmas.max() <= 2.0
    assert 0.5 <= p.sharp_factors.min() and p.sharp_factors.max() <= 3.0
    assert p.sharp_factors.mean().item() == pytest.approx(1.75, abs=0.05)
    # the released stream of random.randint(1, 5) * 2 + 1 spans the same support
    rnd = random.Random(0)
    assert {rnd.randint(1, 5) * 2 + 1 for _ in range(200)} == {3, 5, 7, 9, 11}


def test_views_layout_and_quantisation() -> None:
    g = _g(11)
    hr = quantize(torch.rand(2, 3, 16, 16, generator=g))
    lr = F.avg_pool2d(hr, 2)
    params = sample_pcl_sr_params(2, generator=g)
    out = apply_pcl_sr_views(hr, lr, params)
    assert out.positives.shape == out.negatives.shape == (4, 2, 3, 16, 16)
    assert torch.equal(out.positives[0], hr)
    up = F.interpolate(lr, size=(16, 16), mode="bicubic", align_corners=True).clamp(0, 1)
    assert torch.equal(out.negatives[0], up)
    for t in (out.positives[1:], out.negatives[1:]):
        assert torch.allclose(t * 255, (t * 255).round(), atol=1e-4)
    ks, sg = params.kernel_sizes[1].tolist(), params.sigmas[1].tolist()
    assert torch.equal(
        out.negatives[2], quantize(gaussian_blur(hr, (ks[0], ks[1]), (sg[0], sg[1])))
    )
    assert torch.equal(out.positives[3], quantize(sharpness(hr, params.sharp_factors[2].float())))


def test_views_module_replays_and_leaves_global_rng() -> None:
    hr, lr = torch.rand(2, 3, 16, 16, generator=_g(12)), torch.rand(2, 3, 8, 8, generator=_g(13))
    views = PCLSRViews(2)
    state = torch.get_rng_state()
    a = views(hr, lr, generator=_g(1))
    b = views(hr, lr, generator=_g(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.positives, b.positives) and torch.equal(a.negatives, b.negatives)
    c = views(hr, lr, generator=_g(2))
    assert not torch.equal(a.negatives, c.negatives)


# --------------------------------------------------------------------------- properties (card)


def test_card_1_self_similarity_and_rescaling_invariance() -> None:
    g = _g(14)
    a = torch.randn(3, 8, 4, 4, generator=g, dtype=D64)
    torch.testing.assert_close(pcl_sr_similarity(a, a), torch.ones(3, dtype=D64))
    b = torch.randn(3, 8, 4, 4, generator=g, dtype=D64)
    scale = torch.rand(3, 1, 4, 4, generator=g, dtype=D64) * 5 + 0.1
    torch.testing.assert_close(pcl_sr_similarity(a * scale, b), pcl_sr_similarity(a, b))
    torch.testing.assert_close(pcl_sr_similarity(a, b / scale), pcl_sr_similarity(a, b))


@pytest.mark.parametrize("n_neg", [1, 4])
def test_card_2_equal_similarities_give_log_1_plus_n(n_neg: int) -> None:
    x = torch.rand(2, 3, 8, 8, generator=_g(15), dtype=D64)
    pos = torch.rand(3, 2, 3, 8, 8, generator=_g(16), dtype=D64)
    neg = torch.rand(n_neg, 2, 3, 8, 8, generator=_g(17), dtype=D64)
    const = lambda t: torch.ones(t.shape[0], 5, 2, 2, dtype=t.dtype)  # noqa: E731
    assert pcl_sr_loss(x, pos, neg, embed=const).item() == pytest.approx(
        math.log(1 + n_neg), rel=1e-12
    )


def test_card_3_haar_of_constant_is_zero() -> None:
    out = haar_highpass(torch.full((2, 3, 8, 6), 0.37, dtype=D64))
    assert out.shape == (2, 9, 4, 3) and torch.equal(out, torch.zeros_like(out))


def test_card_4_identity_limits() -> None:
    y = torch.rand(2, 3, 12, 12, generator=_g(18), dtype=D64)
    assert torch.equal(sharpness(y, 1.0), y)
    assert torch.equal(sharpness(y, torch.ones(2, dtype=D64)), y)
    torch.testing.assert_close(gaussian_blur(y, (11, 7), (1e-3, 1e-3)), y)


def test_card_5_gradient_paper_vs_released() -> None:
    """Paper (default): dL/dsr != 0. Released code (no_grad SR features): exactly 0."""
    g = _g(19)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net = PCLSREmbedding(3, width=8, depth=6).double()
    sr = torch.rand(2, 3, 32, 32, generator=g, dtype=D64, requires_grad=True)
    pos = torch.rand(2, 2, 3, 32, 32, generator=g, dtype=D64)
    neg = torch.rand(3, 2, 3, 32, 32, generator=g, dtype=D64)
    (grad,) = torch.autograd.grad(pcl_sr_loss(sr, pos, neg, embed=net), sr)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    parity = pcl_sr_loss(sr, pos, neg, embed=net, detach_sr_features=True)
    (grad0,) = torch.autograd.grad(parity, sr)
    assert torch.equal(grad0, torch.zeros_like(grad0))
    # and the embedding receives no gradient from the parity-mode loss either
    net.zero_grad()
    pcl_sr_loss(sr, pos, neg, embed=net, detach_sr_features=True).backward()
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())


def test_dual_contrastive_properties() -> None:
    r, f = torch.zeros(6, dtype=D64), torch.zeros(3, dtype=D64)
    assert pcl_sr_dual_contrastive_loss(r, f).item() == pytest.approx(math.log(4) + math.log(7))
    # well-separated logits drive the loss to 0
    assert pcl_sr_dual_contrastive_loss(r + 50, f - 50).item() < 1e-10
    assert PCLSRDualContrastiveLoss()(r, f).item() == pcl_sr_dual_contrastive_loss(r, f).item()


def test_half_inputs_reduce_in_float32() -> None:
    x = torch.rand(2, 3, 8, 8).half()
    out = pcl_sr_loss(x, x[None], x[None] * 0.5, embed=haar_highpass)
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_module_repr_and_forward() -> None:
    loss = PCLSRLoss(detach_sr_features=True)
    assert "detach_sr_features=True" in repr(loss)
    assert "cl_layer=2" in repr(PCLSREmbedding(1, width=4, depth=4, cl_layer=2))
    assert "num_copies=2" in repr(PCLSRViews(2))


# --------------------------------------------------------------------------- errors


def test_errors() -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="haar_highpass: x must have even"):
        haar_highpass(torch.rand(1, 3, 7, 8))
    with pytest.raises(ValueError, match=r"haar_highpass: x must have shape \(B, C, H, W\)"):
        haar_highpass(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="haar_highpass: x must be a floating-point tensor"):
        haar_highpass(torch.ones(1, 3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="sharpness: factor must be a number or shape"):
        sharpness(x, torch.ones(3))
    with pytest.raises(ValueError, match="gaussian_blur: kernel_size must be odd"):
        gaussian_blur(x, (4, 3), (1.0, 1.0))
    with pytest.raises(ValueError, match="gaussian_blur: sigma must be > 0"):
        gaussian_blur(x, (3, 3), (0.0, 1.0))
    with pytest.raises(ValueError, match="sample_pcl_sr_params: num_copies must be >= 1"):
        sample_pcl_sr_params(2, num_copies=0)
    with pytest.raises(ValueError, match="PCLSRViews: kernel_range must be odd"):
        PCLSRViews(kernel_range=(2, 11))
    with pytest.raises(ValueError, match="PCLSRViews: sigma_range must satisfy"):
        PCLSRViews(sigma_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="apply_pcl_sr_views: params were drawn for B=3"):
        apply_pcl_sr_views(x, x, sample_pcl_sr_params(3))
    with pytest.raises(ValueError, match="PCLSREmbedding: cl_layer must be < depth=4"):
        PCLSREmbedding(depth=4, cl_layer=4)
    with pytest.raises(ValueError, match="PCLSREmbedding: x must have 1 channels"):
        PCLSREmbedding(1, width=4, depth=2, cl_layer=1)(x)
    with pytest.raises(
        ValueError, match="pcl_sr_loss: every negatives batch must have the shape of sr"
    ):
        pcl_sr_loss(x, x[None], torch.rand(1, 2, 3, 4, 4), embed=haar_highpass)
    with pytest.raises(ValueError, match="pcl_sr_loss: positives must hold at least one"):
        pcl_sr_loss(x, [], x[None], embed=haar_highpass)
    with pytest.raises(TypeError, match="pcl_sr_loss: embed must be callable"):
        pcl_sr_loss(x, x[None], x[None], embed=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pcl_sr_loss: embed must return"):
        pcl_sr_loss(x, x[None], x[None], embed=lambda t: t.flatten(1))
    with pytest.raises(TypeError, match="pcl_sr_loss: negatives has dtype"):
        pcl_sr_loss(x, x[None], x[None].double(), embed=haar_highpass)
    with pytest.raises(TypeError, match="PCLSRLoss: detach_sr_features must be a bool"):
        PCLSRLoss(detach_sr_features=1)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match="pcl_sr_dual_contrastive_loss: real_logits and fake_logits"
    ):
        pcl_sr_dual_contrastive_loss(torch.zeros(0), torch.zeros(3))
    with pytest.raises(ValueError, match="pcl_sr_similarity: b must have the shape of a"):
        pcl_sr_similarity(x, x[:1])
