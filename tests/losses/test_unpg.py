"""UNPG and the CosFace/ArcFace margin heads (posneg.losses.unpg).

Official code: Jung-Jun-Uk/UNPG at commit a6f9c1731a68fc035eb8fe8198f5a5c643825a5b,
``recognition/models/head.py`` (CosFace, ArcFace, UNPG), ``recognition/models/build.py``
(HeadAndLoss, box_and_whisker_algorithm, convert_label_to_similarity) and
``recognition/data/head.zoo.yaml``. The ``_official_*`` helpers below transcribe what those
functions compute (written here, not copied), on one GPU (``num_gpu = 1``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from posneg.losses.unpg import (
    ZOO_MARGIN,
    ZOO_SCALE,
    ZOO_WISK,
    ArcFaceLoss,
    CosFaceLoss,
    UNPGLoss,
    arcface_logits,
    box_and_whisker,
    cosface_logits,
    margin_softmax,
    negative_pair_similarities,
    unpg,
)

F64 = torch.float64


def _data(b: int = 10, d: int = 6, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=F64)
    w = torch.randn(c, d, generator=g, dtype=F64)
    y = torch.randint(0, c, (b,), generator=g)
    y[:c] = torch.arange(c)  # every identity present
    return x, w, y


# ---------------------------------------------------------------------------------------------
# transcription of the official code (behaviour, num_gpu = 1)
# ---------------------------------------------------------------------------------------------


def _official_box_and_whisker(similarities: torch.Tensor, wisk: float) -> torch.Tensor:
    n = similarities.size(0)
    ordered = torch.sort(similarities, descending=False)[0]
    q1 = ordered[int(0.25 * n)]
    q3 = ordered[int(0.75 * n)]
    iqr = q3 - q1
    mask = torch.logical_and(ordered <= q3 + wisk * iqr, ordered >= q1 - wisk * iqr)
    return ordered[mask]


def _official_negative_pairs(normed: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    sim = normed @ normed.transpose(1, 0)
    same = label.unsqueeze(1) == label.unsqueeze(0)
    negative = same.logical_not().triu(diagonal=1)
    return sim.view(-1)[negative.view(-1)]


def _official_head(x: torch.Tensor, weight: torch.Tensor, label: torch.Tensor, head: str, m: float):
    cosine = F.linear(F.normalize(x), F.normalize(weight))
    one_hot = torch.zeros_like(cosine)
    one_hot.scatter_(1, label.view(-1, 1), 1.0)
    if head == "cosface":
        return cosine - one_hot * m
    theta = cosine.acos()  # (the official code does this in place on every entry)
    return (theta + one_hot * m).cos()


def _official_loss(x, weight, label, *, head, s, m, wisk, aux_unpg=True):
    cosine = _official_head(x, weight, label, head, m)
    if not aux_unpg:
        return F.cross_entropy(s * cosine, label)
    sn = _official_negative_pairs(F.normalize(x), label)
    aux_sn = torch.stack([_official_box_and_whisker(sn, wisk)] * 1, dim=0)  # num_gpu = 1
    aux_sn = torch.ones(cosine.size(0), 1, dtype=cosine.dtype) * aux_sn
    return F.cross_entropy(s * torch.cat([cosine, aux_sn], dim=1), label)


# ---------------------------------------------------------------------------------------------
# naive float64 loops from the paper's equation
# ---------------------------------------------------------------------------------------------


def _naive(x, w, y, *, head, s, m, wisk, pairs=True) -> list[float]:
    b, c = x.shape[0], w.shape[0]
    xn = [[float(v) for v in row / row.norm()] for row in x]
    wn = [[float(v) for v in row / row.norm()] for row in w]

    def dot(u: list[float], v: list[float]) -> float:
        return sum(p * q for p, q in zip(u, v, strict=True))

    sn = [dot(xn[a], xn[bb]) for a in range(b) for bb in range(a + 1, b) if y[a] != y[bb]]
    kept: list[float] = []
    if pairs and sn:
        srt = sorted(sn)
        q1, q3 = srt[int(0.25 * len(srt))], srt[int(0.75 * len(srt))]
        lo, hi = q1 - wisk * (q3 - q1), q3 + wisk * (q3 - q1)
        kept = [v for v in srt if lo <= v <= hi] if math.isfinite(wisk) else srt
    out = []
    for i in range(b):
        logits = []
        for k in range(c):
            cos = dot(xn[i], wn[k])
            if k == int(y[i]):
                cos = cos - m if head == "cosface" else math.cos(math.acos(cos) + m)
            logits.append(s * cos)
        terms = logits + [s * v for v in kept]
        out.append(-logits[int(y[i])] + math.log(sum(math.exp(t) for t in terms)))
    return out


@pytest.mark.parametrize("head", ["cosface", "arcface"])
@pytest.mark.parametrize("wisk", [0.0, 0.5, 1.5, math.inf])
def test_formula_against_naive_loop(head: str, wisk: float) -> None:
    x, w, y = _data()
    got = unpg(x, w, y, head=head, scale=8.0, margin=0.3, wisk=wisk, reduction="none")
    want = torch.tensor(_naive(x, w, y, head=head, s=8.0, m=0.3, wisk=wisk), dtype=F64)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert torch.allclose(unpg(x, w, y, head=head, scale=8.0, margin=0.3, wisk=wisk), want.mean())
    got_sum = unpg(x, w, y, head=head, scale=8.0, margin=0.3, wisk=wisk, reduction="sum")
    assert torch.allclose(got_sum, want.sum())


@pytest.mark.parametrize("head", ["cosface", "arcface"])
def test_margin_softmax_against_naive_loop(head: str) -> None:
    x, w, y = _data(seed=3)
    got = margin_softmax(x, w, y, head=head, scale=16.0, margin=0.4, reduction="none")
    want = _naive(x, w, y, head=head, s=16.0, m=0.4, wisk=1.5, pairs=False)
    torch.testing.assert_close(got, torch.tensor(want, dtype=F64), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# the official code's behaviour
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["cosface", "arcface"])
@pytest.mark.parametrize("aux", [True, False])
def test_matches_official_loss_and_gradients(head: str, aux: bool) -> None:
    x, w, y = _data(b=12, c=5, seed=1)
    x1, w1 = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    x2, w2 = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    hyper = {"head": head, "scale": 10.0, "margin": 0.5}
    ours = unpg(x1, w1, y, **hyper, wisk=1.5) if aux else margin_softmax(x1, w1, y, **hyper)
    theirs = _official_loss(x2, w2, y, s=10.0, m=0.5, wisk=1.5, head=head, aux_unpg=aux)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-9, atol=1e-12)


def test_zoo_defaults() -> None:
    """head.zoo.yaml: s = 64, m = 0.5 for arcface and for cosface, unpg wisk = 1.5; the official
    train.py defaults to --head arcface."""
    assert (ZOO_SCALE, ZOO_MARGIN, ZOO_WISK) == (64.0, 0.5, 1.5)
    module = UNPGLoss(3, 4)
    assert (module.head, module.scale, module.margin, module.wisk) == ("arcface", 64.0, 0.5, 1.5)
    x, w, y = _data()
    torch.testing.assert_close(
        unpg(x, w, y), _official_loss(x, w, y, head="arcface", s=64.0, m=0.5, wisk=1.5)
    )


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 13, 40])
@pytest.mark.parametrize("wisk", [0.0, 0.25, 1.5])
def test_box_and_whisker_transcription(n: int, wisk: float) -> None:
    g = torch.Generator().manual_seed(n)
    s = torch.randn(n, generator=g, dtype=F64) ** 3  # heavy tails: some values fall outside
    torch.testing.assert_close(box_and_whisker(s, wisk=wisk), _official_box_and_whisker(s, wisk))


def test_box_and_whisker_floor_indexing_not_interpolated() -> None:
    # L = 5: Q1 = S[1] = 1, Q3 = S[3] = 3 (floor indices), IQR = 2; with k = 0.5 the fence is
    # [0, 4]. numpy's interpolated quartiles (1.0, 3.0 here too) differ for L = 6 below.
    s = torch.tensor([4.1, 1.0, 3.0, 2.0, 0.0], dtype=F64)
    torch.testing.assert_close(
        box_and_whisker(s, wisk=0.5), torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=F64)
    )
    # L = 6: Q1 = S[1] = 1, Q3 = S[4] = 10; interpolated quartiles would be 1.25 and 7.75
    s6 = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0, 24.6], dtype=F64)
    assert box_and_whisker(s6, wisk=1.5).tolist() == [
        0.0,
        1.0,
        2.0,
        3.0,
        10.0,
    ]  # fence [-12.5, 23.5]


def test_pairs_are_the_upper_triangle_without_margin() -> None:
    x, _, y = _data(b=9, seed=2)
    xn = F.normalize(x)
    torch.testing.assert_close(negative_pair_similarities(x, y), _official_negative_pairs(xn, y))


def test_arcface_has_no_easy_margin_and_no_th_mm() -> None:
    """The official ArcFace applies cos(theta + m) at every angle: a negative target cosine still
    gets the margin (easy_margin would leave it), and past theta = pi - m the logit rises again
    (insightface's th/mm would give cos - m sin m there)."""
    m = 0.5
    cos = torch.tensor([[-0.5, 0.0], [-0.99, 0.0], [-0.95, 0.0]], dtype=F64)
    y = torch.tensor([0, 0, 0])
    out = arcface_logits(cos, y, margin=m)[:, 0]
    want = torch.cos(torch.acos(cos[:, 0]) + m)
    torch.testing.assert_close(out, want)
    assert out[0] < cos[0, 0]  # no easy margin
    assert out[1] > out[2]  # theta(-0.99) > pi - m: non-monotone, no th/mm fallback
    assert not torch.allclose(out[1], cos[1, 0] - m * math.sin(math.pi - m))


def test_arcface_clamps_where_official_gives_nan() -> None:
    """Deliberate difference: a cosine rounding past 1 gives NaN in the official acos; here it is
    clamped."""
    cos = torch.tensor([[1.0 + 1e-12, 0.0]], dtype=F64)
    y = torch.tensor([0])
    assert torch.isnan(_official_head_from_cos(cos, y, 0.5)).any()
    out = arcface_logits(cos, y, margin=0.5)
    assert torch.isfinite(out).all()
    assert math.isclose(float(out[0, 0]), math.cos(0.5), rel_tol=1e-6)


def _official_head_from_cos(cosine: torch.Tensor, label: torch.Tensor, m: float) -> torch.Tensor:
    one_hot = torch.zeros_like(cosine).scatter_(1, label.view(-1, 1), 1.0)
    return (cosine.acos() + one_hot * m).cos()


def test_single_identity_where_official_raises() -> None:
    """Deliberate difference: one identity has no negative pair; the official
    box_and_whisker_algorithm indexes an empty tensor (IndexError); here the loss is the base."""
    x, w, _ = _data()
    y = torch.zeros(x.shape[0], dtype=torch.long)
    with pytest.raises(IndexError):
        _official_loss(x, w, y, head="cosface", s=8.0, m=0.3, wisk=1.5)
    assert box_and_whisker(torch.zeros(0, dtype=F64)).numel() == 0


# ---------------------------------------------------------------------------------------------
# properties (the card's tests)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["cosface", "arcface"])
def test_single_identity_is_exactly_the_base_loss(head: str) -> None:
    x, w, _ = _data()
    y = torch.full((x.shape[0],), 2, dtype=torch.long)
    for reduction in ("mean", "none"):
        a = unpg(x, w, y, head=head, reduction=reduction)
        b = margin_softmax(x, w, y, head=head, reduction=reduction)
        assert torch.equal(a, b)
    module = ArcFaceLoss(4, 6).double() if head == "arcface" else CosFaceLoss(4, 6).double()
    with torch.no_grad():
        module.weight.copy_(w)
    assert torch.equal(module(x, y), margin_softmax(x, w, y, head=head))


def test_infinite_wisk_keeps_every_negative_pair() -> None:
    x, _, y = _data(b=11)
    sn = negative_pair_similarities(x, y)
    n_neg = sum(int(y[a] != y[b]) for a in range(11) for b in range(a + 1, 11))
    assert sn.numel() == n_neg
    kept = box_and_whisker(sn, wisk=math.inf)
    assert kept.numel() == n_neg
    torch.testing.assert_close(kept, torch.sort(sn).values)
    # constant similarities (IQR = 0): inf keeps them all, where inf * 0 = nan would drop them
    assert box_and_whisker(torch.full((6,), 0.3), wisk=math.inf).numel() == 6
    # any finite k keeps a subset
    assert (
        box_and_whisker(sn * torch.linspace(1, 50, sn.numel(), dtype=F64), wisk=0.0).numel() < n_neg
    )


@pytest.mark.parametrize("head", ["cosface", "arcface"])
@pytest.mark.parametrize("seed", range(4))
def test_appending_columns_never_decreases_the_loss(head: str, seed: int) -> None:
    x, w, y = _data(seed=seed)
    base = margin_softmax(x, w, y, head=head, reduction="none")
    for wisk in (0.0, 1.5, math.inf):
        assert bool((unpg(x, w, y, head=head, wisk=wisk, reduction="none") >= base).all())
    # more pairs kept, larger loss
    small = unpg(x, w, y, head=head, wisk=0.0, reduction="none")
    large = unpg(x, w, y, head=head, wisk=math.inf, reduction="none")
    assert bool((large >= small).all())


def test_pairs_exclude_diagonal_and_duplicates() -> None:
    # Distinct pair similarities: the set must be exactly {x_a.x_b : a < b, y_a != y_b}.
    x, _, y = _data(b=7, d=7, seed=5)
    xn = F.normalize(x)
    got = sorted(negative_pair_similarities(x, y).tolist())
    want = sorted(float(xn[a] @ xn[b]) for a in range(7) for b in range(a + 1, 7) if y[a] != y[b])
    assert got == pytest.approx(want, abs=1e-12)
    assert not any(abs(v - 1.0) < 1e-9 for v in got)  # no self-similarity (diagonal)
    # duplicated embeddings of different identities: each unordered pair appears once
    twin = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    assert negative_pair_similarities(twin, torch.tensor([0, 1])).tolist() == [1.0]


def test_gradients_flow_through_the_pairs() -> None:
    """With W detached the pair term still moves the embeddings: the UNPG gradient differs from
    the base gradient exactly by the gradient of the appended pairs."""
    x, w, y = _data()
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    unpg(xa, w, y, wisk=math.inf).backward()
    margin_softmax(xb, w, y).backward()
    assert xa.grad is not None and xb.grad is not None
    assert not torch.allclose(xa.grad, xb.grad)
    # the same S'_n in every row: the pair part of each row's loss is one shared log-sum-exp
    per_row = unpg(x, w, y, wisk=math.inf, reduction="none")
    assert per_row.shape == (x.shape[0],)


def test_module_equals_function_and_generator_leaves_global_rng() -> None:
    before = torch.get_rng_state()
    a = UNPGLoss(
        4,
        6,
        head="cosface",
        scale=8.0,
        margin=0.2,
        wisk=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    b = UNPGLoss(
        4,
        6,
        head="cosface",
        scale=8.0,
        margin=0.2,
        wisk=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a.weight, b.weight)
    x, _, y = _data(b=8, d=6, c=4)
    x = x.float()
    want = unpg(x, a.weight, y, head="cosface", scale=8.0, margin=0.2, wisk=1.0)
    assert torch.equal(a(x, y), want)
    text = repr(a)
    for part in (
        "head='cosface'",
        "num_classes=4",
        "embedding_dim=6",
        "scale=8.0",
        "margin=0.2",
        "wisk=1.0",
    ):
        assert part in text


def test_half_inputs_reduce_in_float32() -> None:
    x, w, y = _data()
    out = unpg(x.half(), w.float(), y)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    torch.testing.assert_close(out, unpg(x.half().float(), w.float(), y))


def test_cosface_logits_formula() -> None:
    cos = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=F64)
    out = cosface_logits(cos, torch.tensor([2, 0]), margin=0.25)
    want = torch.tensor([[0.1, 0.2, 0.05], [0.15, 0.5, 0.6]], dtype=F64)
    torch.testing.assert_close(out, want)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    x, w, y = _data()
    with pytest.raises(
        ValueError, match="unpg: head must be one of 'cosface', 'arcface'; got 'sphere'"
    ):
        unpg(x, w, y, head="sphere")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unpg: scale must be > 0"):
        unpg(x, w, y, scale=0.0)
    with pytest.raises(ValueError, match="unpg: margin must be >= 0"):
        unpg(x, w, y, margin=-0.1)
    with pytest.raises(ValueError, match=r"unpg: wisk must be >= 0 \(math.inf keeps every pair\)"):
        unpg(x, w, y, wisk=-1.0)
    with pytest.raises(TypeError, match="unpg: wisk must be a real number; got str"):
        unpg(x, w, y, wisk="1.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unpg: reduction must be one of"):
        unpg(x, w, y, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unpg: labels must lie in \[0, 4\)"):
        unpg(x, w, y + 1)
    with pytest.raises(ValueError, match=r"unpg: labels must have shape \(10,\)"):
        unpg(x, w, y[:3])
    with pytest.raises(TypeError, match="unpg: labels must be an integer tensor"):
        unpg(x, w, y.double())
    with pytest.raises(ValueError, match="unpg: weight must have dimension D=6 like embeddings"):
        unpg(x, w[:, :3], y)
    with pytest.raises(ValueError, match=r"unpg: weight must have shape \(C, D\)"):
        unpg(x, w[0], y)
    with pytest.raises(
        TypeError, match=r"unpg: weight has dtype torch\.float32 but embeddings has torch\.float64"
    ):
        unpg(x, w.float(), y)
    with pytest.raises(ValueError, match=r"unpg: embeddings must have shape \(B, D\)"):
        unpg(x[0], w, y)
    with pytest.raises(TypeError, match="unpg: embeddings must be a floating-point tensor"):
        unpg(x.long(), w, y)
    with pytest.raises(ValueError, match="margin_softmax: scale must be > 0"):
        margin_softmax(x, w, y, scale=-1.0)
    with pytest.raises(ValueError, match=r"cosface_logits: cosine must have shape \(B, C\)"):
        cosface_logits(torch.zeros(3), y)
    with pytest.raises(ValueError, match="arcface_logits: margin must be >= 0"):
        arcface_logits(torch.zeros(10, 4), y, margin=-1.0)
    with pytest.raises(ValueError, match=r"box_and_whisker: similarities must have shape \(L,\)"):
        box_and_whisker(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="UNPGLoss: head must be one of"):
        UNPGLoss(3, 4, head="magface")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="UNPGLoss: num_classes must be"):
        UNPGLoss(0, 4)
    with pytest.raises(ValueError, match="CosFaceLoss: scale must be > 0"):
        CosFaceLoss(3, 4, scale=0)
    with pytest.raises(ValueError, match="ArcFaceLoss: margin must be >= 0"):
        ArcFaceLoss(3, 4, margin=-0.5)
