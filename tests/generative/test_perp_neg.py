"""Perp-Neg (posneg.generative.perp_neg) against its formula and the official code's behaviour.

Reference: ``Perp-Neg/Perp-Neg-stablediffusion`` at commit 398d15d9e3138faf530c1bdb79c6a54e6f1859ea:
``perpneg_diffusion/perpneg_stable_diffusion/pipeline_perpneg_stable_diffusion.py``
(``get_prependicualr_component``, ``weighted_prependicualr_aggricator``) and
``stable-dreamfusion/guidance/perpneg_utils.py`` (``batch_get_perpendicular_component``,
``weighted_perpendicular_aggregator``), ``nerf/utils.py`` (``get_pos_neg_text_embeddings``). The
transcriptions below are written from reading that code (not copied).
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.generative.perp_neg import (
    PerpNegGuidance,
    guidance,
    perp_neg_2d,
    perp_neg_3d,
    perpendicular_component,
    view_weights,
)


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _r(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_g(seed), dtype=torch.float64)


# --- transcriptions of the official code's behaviour ------------------------------------------


def _code_perp_2d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # whole-tensor inner product, no guard
    return x - (float((x * y).sum()) / float(torch.norm(y) ** 2)) * y


def _code_aggregate_2d(
    dpos: torch.Tensor, wpos: list[float], dneg: torch.Tensor, wneg: list[float]
) -> torch.Tensor:
    # dpos: (P+1, 1, ...) main first; wpos: positive weights (main first); wneg: |w| of negatives.
    main = dpos[0:1]
    acc = torch.zeros_like(main)
    for i in range(1, dpos.shape[0]):
        acc = acc + wpos[i - 1] * _code_perp_2d(dpos[i : i + 1], main)  # off-by-one as released
    for j in range(dneg.shape[0]):
        acc = acc - wneg[j] * _code_perp_2d(dneg[j : j + 1], main)
    return acc + main


def _code_aggregate_3d(deltas: torch.Tensor, weights: torch.Tensor, b: int) -> torch.Tensor:
    # deltas: (K*B, ...) split into K chunks of B; weights (K*B,) with weights[:B] == 1
    chunks, ws = deltas.split(b), weights.split(b)
    main = chunks[0]
    acc = torch.zeros_like(main)
    for k in range(1, len(chunks)):
        keep = ws[k].abs() > 1e-4
        for s in range(b):
            if not keep[s]:
                continue
            x, y = chunks[k][s], main[s]
            sq = max(float(torch.norm(y) ** 2), 1e-6)
            acc[s] = acc[s] + ws[k][s] * (x - (float((x * y).sum()) / sq) * y)
    return acc + main


def _code_view_weights(
    a: float, neg_w: float = -2.0, fd: float = 2.0, sd: float = 10.0
) -> list[float]:
    if -90 <= a < 90:
        r = 1 - a / 90 if a >= 0 else 1 + a / 90
        front = 0.0 if r > 0.8 else math.exp(-r * fd) * neg_w
        side = 0.0 if r < 0.2 else math.exp(-(1 - r) * sd) * neg_w
        return [1.0, front, side]
    r = 1 - (a - 90) / 90 if a >= 0 else 1 + (a + 90) / 90
    side = 0.0 if r > 0.8 else math.exp(-r * sd) * neg_w / 2
    return [1.0, side, neg_w]


def test_2d_matches_code_transcription_with_extra_positives() -> None:
    main, extra, negs = _r(1, 4, 5, 5, seed=1), _r(2, 1, 4, 5, 5, seed=2), _r(3, 1, 4, 5, 5, seed=3)
    wpos, wneg = [1.0, 0.7, 0.3], [1.5, 0.5, 2.0]
    ours = perp_neg_2d(main, negs, wneg, delta_pos=extra, pos_weights=wpos)
    ref = _code_aggregate_2d(torch.cat([main[None], extra])[:, 0], wpos, negs[:, 0], wneg)
    torch.testing.assert_close(ours, ref)


def test_2d_code_vs_paper_positive_weight_indexing_differ() -> None:
    main, extra, negs = _r(1, 8, seed=4), _r(1, 1, 8, seed=5), _r(1, 1, 8, seed=6)
    code = perp_neg_2d(main, negs, 1.0, delta_pos=extra, pos_weights=[1.0, 0.25])
    paper = perp_neg_2d(
        main, negs, 1.0, delta_pos=extra, pos_weights=[1.0, 0.25], pos_weights_from="paper"
    )
    perp = perpendicular_component(extra[0], main, guard=None)
    torch.testing.assert_close(code - paper, (1.0 - 0.25) * perp)


def test_2d_negative_weights_enter_by_magnitude() -> None:
    main, negs = _r(1, 6, seed=7), _r(1, 1, 6, seed=8)
    torch.testing.assert_close(perp_neg_2d(main, negs, -1.5), perp_neg_2d(main, negs, 1.5))


def test_2d_whole_tensor_vs_per_sample() -> None:
    main, negs = _r(3, 6, seed=9), _r(1, 3, 6, seed=10)
    whole = perp_neg_2d(main, negs, 1.0)
    per = perp_neg_2d(main, negs, 1.0, per_sample=True)
    ref_whole = _code_aggregate_2d(main[None], [1.0], negs, [1.0])[0]
    torch.testing.assert_close(whole, ref_whole)
    ref_per = torch.stack(
        [
            _code_aggregate_2d(main[s : s + 1][None], [1.0], negs[:, s : s + 1], [1.0])[0, 0]
            for s in range(3)
        ]
    )
    torch.testing.assert_close(per, ref_per)
    assert not torch.allclose(whole, per)


def test_3d_matches_code_transcription() -> None:
    b = 3
    main, others = _r(b, 4, 4, 4, seed=11), _r(2, b, 4, 4, 4, seed=12)
    w = torch.tensor([[-0.5, 0.0, -2.0], [-1.0, -0.3, 5e-5]], dtype=torch.float64)
    ours = perp_neg_3d(main, others, w)
    ref = _code_aggregate_3d(
        torch.cat([main, others.flatten(0, 1)]),
        torch.cat([torch.ones(b, dtype=torch.float64), w.flatten()]),
        b,
    )
    torch.testing.assert_close(ours, ref)


def test_3d_guard_keeps_zero_main_finite_while_2d_is_nan() -> None:
    main, negs = torch.zeros(2, 5, dtype=torch.float64), _r(1, 2, 5, seed=13)
    assert torch.isfinite(perp_neg_3d(main, negs, -1.0)).all()
    assert torch.isnan(perp_neg_2d(main, negs, 1.0)).all()


def test_batched_3d_equals_per_sample_2d_up_to_sign() -> None:
    main, negs = _r(4, 3, 3, seed=14), _r(2, 4, 3, 3, seed=15)
    torch.testing.assert_close(
        perp_neg_3d(main, negs, [-1.5, -0.5]), perp_neg_2d(main, negs, [1.5, 0.5], per_sample=True)
    )


@pytest.mark.parametrize(
    "a", [0.0, 10.0, 45.0, -45.0, 80.0, -90.0, 90.0, 135.0, -135.0, 180.0, -170.0]
)
def test_view_weights_match_code(a: float) -> None:
    vw = view_weights(a)
    ref = _code_view_weights(a)
    assert vw.neg_weights == pytest.approx(tuple(ref[1:]))
    front_side = -90 <= a < 90
    assert (vw.start, vw.end) == (("front", "side") if front_side else ("side", "back"))


def test_view_weights_values() -> None:
    assert view_weights(0).neg_weights == (0.0, -2.0)  # r = 1: no front negative, side exp(0)*-2
    assert view_weights(-90).neg_weights == (-2.0, 0.0)  # r = 0
    assert view_weights(90).neg_weights == (0.0, -2.0)  # back branch, r = 1
    assert view_weights(180).neg_weights == pytest.approx((-1.0, -2.0))  # r = 0
    assert view_weights(45).r == pytest.approx(0.5)


# --- formula (naive float64 loop) -------------------------------------------------------------


def test_guidance_formulas_against_naive_loop() -> None:
    b, k, s = 2, 2, 4.0
    eu, ep, en = _r(b, 1, 3, 3, seed=16), _r(b, 1, 3, 3, seed=17), _r(k, b, 1, 3, 3, seed=18)
    w = [1.5, 0.5]
    for m in ("cfg", "composable", "negative_prompt", "perp_neg"):
        out = guidance(eu, ep, en, method=m, guidance_scale=s, neg_weights=w)
        for i in range(b):
            u, p = eu[i].flatten().tolist(), ep[i].flatten().tolist()
            negs = [en[j, i].flatten().tolist() for j in range(k)]
            dm = [pp - uu for pp, uu in zip(p, u, strict=False)]
            dns = [[nn - uu for nn, uu in zip(n, u, strict=False)] for n in negs]
            sq = sum(c * c for c in dm)
            coefs = [sum(a * c for a, c in zip(dn, dm, strict=True)) / sq for dn in dns]
            want = []
            for d in range(len(u)):
                if m == "cfg":
                    want.append(u[d] + s * dm[d])
                elif m == "negative_prompt":
                    want.append(negs[0][d] + s * (p[d] - negs[0][d]))
                elif m == "composable":
                    want.append(u[d] + s * (dm[d] - sum(w[j] * dns[j][d] for j in range(k))))
                else:
                    perp = [dns[j][d] - coefs[j] * dm[d] for j in range(k)]
                    want.append(u[d] + s * (dm[d] - sum(w[j] * perp[j] for j in range(k))))
            assert out[i].flatten().tolist() == pytest.approx(want, rel=1e-10, abs=1e-10)


# --- properties -------------------------------------------------------------------------------


def test_parallel_negative_contributes_nothing() -> None:
    eu, ep = _r(3, 2, 4, seed=19), _r(3, 2, 4, seed=20)
    dm = ep - eu
    negs = (eu + torch.tensor([2.0, -0.5, 3.0], dtype=torch.float64)[:, None, None] * dm)[None]
    out = guidance(eu, ep, negs, method="perp_neg", guidance_scale=7.5, neg_weights=1.5)
    torch.testing.assert_close(out, guidance(eu, ep, method="cfg", guidance_scale=7.5))
    out3 = guidance(
        eu, ep, negs, method="perp_neg", guidance_scale=7.5, neg_weights=1.5, variant="3d"
    )
    torch.testing.assert_close(out3, out)


def test_orthogonal_negative_equals_plain_negative_guidance() -> None:
    eu = _r(2, 6, seed=21)
    dm = torch.tensor([[1.0, 0, 0, 2, 0, 0], [0, 1.0, 0, 0, 0, 0]], dtype=torch.float64)
    dn = torch.tensor([[0, 3.0, 0, 0, 1, 0], [1.0, 0, 2, 0, 0, 1]], dtype=torch.float64)
    args = (eu, eu + dm, (eu + dn)[None])
    kw = {"guidance_scale": 5.0, "neg_weights": 1.5}
    torch.testing.assert_close(
        guidance(*args, method="perp_neg", **kw), guidance(*args, method="composable", **kw)
    )


def test_complementary_positive_equal_to_main_contributes_zero() -> None:
    main, negs = _r(1, 7, seed=22), _r(1, 1, 7, seed=23)
    with_pos = perp_neg_2d(main, negs, 1.0, delta_pos=main[None].clone(), pos_weights=[1.0, 1.0])
    torch.testing.assert_close(with_pos, perp_neg_2d(main, negs, 1.0))


def test_perpendicular_component_is_orthogonal_and_half_precision() -> None:
    x, y = _r(4, 10, seed=24), _r(4, 10, seed=25)
    p = perpendicular_component(x, y)
    assert (p * y).sum(dim=1).abs().max() < 1e-10
    ph = perpendicular_component(x.half(), y.half())
    assert ph.dtype == torch.float16 and torch.isfinite(ph).all()


def test_module_matches_function_and_repr() -> None:
    eu, ep, en = _r(2, 5, seed=26), _r(2, 5, seed=27), _r(1, 2, 5, seed=28)
    m = PerpNegGuidance(guidance_scale=3.0, neg_weights=(2.0,), variant="3d")
    torch.testing.assert_close(
        m(eu, ep, en), guidance(eu, ep, en, guidance_scale=3.0, neg_weights=[2.0], variant="3d")
    )
    assert "guidance_scale=3.0" in repr(m) and "variant='3d'" in repr(m)


# --- errors -----------------------------------------------------------------------------------


def test_errors() -> None:
    e = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="guidance: method must be one of"):
        guidance(e, e, method="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="guidance: eps_negs is required"):
        guidance(e, e, method="perp_neg")
    with pytest.raises(ValueError, match=r"guidance: eps_negs must have shape \(K, 2, 3\)"):
        guidance(e, e, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="guidance: eps_pos must have shape"):
        guidance(e, torch.zeros(3, 3), e[None])
    with pytest.raises(ValueError, match="guidance: neg_weights must have K=1"):
        guidance(e, e, e[None], neg_weights=[1.0, 2.0])
    with pytest.raises(TypeError, match=r"guidance: eps_uncond must be a torch\.Tensor"):
        guidance([1.0], e)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="perp_neg_2d: pos_weights must hold P \\+ 1 = 2"):
        perp_neg_2d(e, e[None], 1.0, delta_pos=e[None], pos_weights=[1.0])
    with pytest.raises(ValueError, match="perpendicular_component: guard must be >= 0"):
        perpendicular_component(e, e, guard=-1.0)
    with pytest.raises(ValueError, match="PerpNegGuidance: variant must be one of"):
        PerpNegGuidance(variant="4d")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="view_weights: azimuth must be"):
        view_weights("front")  # type: ignore[arg-type]
