"""Tests of CQ-DINO's category queries, selection, tree aggregation, ASL and gradient share.

Transcription source: ``RedAIGC/CQ-DINO`` at commit 6c8e60f,
``mmdet/models/detectors/cqdino.py`` (``AsymmetricLoss.forward``, ``CQDINO.create_parent_mask``,
``CQDINO.loss``: ``logits * parent_mask``, ``image_categories * parent_mask``),
``mmdet/models/language_models/learnable_category_query_tree.py`` (``csv_to_json`` weights,
``TreeFeatureProcessor.calculate_features``), ``mmdet/models/dense_heads/grounding_dino_head.py``
(``ContrastiveEmbed.forward``).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from posneg.detection.cq_dino import (
    CategoryContrastiveHead,
    CategoryTreeAggregation,
    CQDINOSelectionLoss,
    ancestor_mask,
    asymmetric_loss,
    category_positive_map,
    contrastive_logits,
    focal_logit_gradient,
    gradient_share,
    select_top_k,
    tree_aggregate,
    tree_depths,
    tree_weights,
)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _naive_asl(z, y, gn, gp, clip, eps):  # type: ignore[no-untyped-def]
    """Element loop of the released AsymmetricLoss (float64)."""
    total = 0.0
    for b in range(len(z)):
        for c in range(len(z[b])):
            x = min(max(z[b][c], -88.0), 88.0)
            t = min(max(y[b][c], 0.0), 1.0)
            p = _sig(x)
            pn = 1 - p
            if clip > 0:
                pn = min(pn + clip, 1.0)
            pp = min(max(p, eps), 1.0)
            pn = min(max(pn, eps), 1.0)
            term = t * math.log(pp) + (1 - t) * math.log(pn)
            if gn > 0 or gp > 0:
                pt = min(max(pp * t + pn * (1 - t), eps), 1.0)
                term *= (1 - pt) ** (gp * t + gn * (1 - t))
            total += term
    return -total


# ---------------------------------------------------------------- asymmetric loss


@pytest.mark.parametrize(("gn", "gp", "clip"), [(7.0, 0.0, 0.05), (4.0, 1.0, 0.2), (0.0, 0.0, 0.0)])
def test_asl_matches_naive_loop(gn: float, gp: float, clip: float) -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 6, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(3, 6, generator=g) < 0.4).double()
    got = asymmetric_loss(logits=z, targets=y, gamma_neg=gn, gamma_pos=gp, clip=clip)
    want = _naive_asl(z.tolist(), y.tolist(), gn, gp, clip, 1e-8)
    assert float(got) == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_asl_without_focusing_or_clip_is_summed_bce() -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(4, 5, generator=g, dtype=torch.float64)
    y = (torch.rand(4, 5, generator=g) < 0.5).double()
    got = asymmetric_loss(logits=z, targets=y, gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
    assert torch.allclose(got, bce, rtol=1e-10)


def test_asl_focusing_weight_carries_no_gradient() -> None:
    """Released: the weight (1 - p_t)^gamma is computed with grad disabled."""
    z = torch.tensor([[0.3, -0.7]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    asymmetric_loss(logits=z, targets=y, gamma_neg=3.0, gamma_pos=2.0, clip=0.1).backward()
    p0, p1 = _sig(0.3), _sig(-0.7)
    w0 = (1 - p0) ** 2.0
    pn = 1 - p1 + 0.1
    w1 = (1 - pn) ** 3.0
    # d/dz of -w log p = -w (1 - p); of -w log(1 - p + clip) = w p (1 - p) / (1 - p + clip)
    want = [-w0 * (1 - p0), w1 * p1 * (1 - p1) / pn]
    assert z.grad is not None
    assert z.grad[0].tolist() == pytest.approx(want, rel=1e-10)


def test_asl_negative_weight_uses_clipped_probability() -> None:
    """Released: p_t of a negative is the *shifted* 1 - p + clip, so the weight is (p - clip)^g."""
    z = torch.tensor([[0.0]], dtype=torch.float64)
    y = torch.zeros(1, 1, dtype=torch.float64)
    got = float(asymmetric_loss(logits=z, targets=y, gamma_neg=2.0, clip=0.1))
    assert got == pytest.approx(-math.log(0.6) * 0.4**2, rel=1e-12)
    assert got != pytest.approx(-math.log(0.6) * 0.5**2, rel=1e-3)  # unshifted weight


def test_asl_is_summed_not_averaged() -> None:
    z = torch.zeros(2, 3)
    y = torch.zeros(2, 3)
    one = asymmetric_loss(logits=z[:1, :1], targets=y[:1, :1])
    assert float(asymmetric_loss(logits=z, targets=y)) == pytest.approx(6 * float(one), rel=1e-6)


def test_masked_ancestor_is_constant_and_gradient_free() -> None:
    parents = [-1, 0, 1]
    y = torch.tensor([[0.0, 0.0, 1.0]])
    mask = ancestor_mask(targets=y, parents=parents)
    assert mask.tolist() == [[False, False, True]]
    z = torch.tensor([[5.0, -3.0, 0.2]], requires_grad=True)
    loss = CQDINOSelectionLoss(parents=parents)(z, y)
    loss.backward()
    assert z.grad is not None
    assert z.grad[0, :2].tolist() == [0.0, 0.0]
    assert float(z.grad[0, 2]) != 0.0
    # masked entries: logit 0, target 0 -> -log(0.55) * 0.45^7 each, whatever the logit
    z2 = torch.tensor([[-9.0, 4.0, 0.2]])
    loss2 = CQDINOSelectionLoss(parents=parents)(z2, y)
    assert float(loss2) == pytest.approx(float(loss.detach()), rel=1e-6)
    const = -math.log(0.55) * 0.45**7
    rest = float(asymmetric_loss(logits=z2[:, 2:], targets=y[:, 2:]))
    assert float(loss2) == pytest.approx(rest + 2 * const, rel=1e-6)


def test_ancestor_mask_keeps_labelled_ancestors() -> None:
    parents = [-1, 0, 1, 0]
    y = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    m = ancestor_mask(targets=y, parents=parents)
    assert m.tolist() == [
        [False, True, True, True],
        [False, True, True, True],
        [True, True, True, True],
    ]


# ---------------------------------------------------------------- tree


def test_tree_weights_formula_and_range() -> None:
    parents = [-1, 0, 0, 1, 1, 1]  # node 0: 5 descendants, node 1: 3
    w = tree_weights(parents=parents)
    want = [0.4 + 0.4 * math.log(2 + n) / math.log(2 + 6) for n in (5, 3, 0, 0, 0, 0)]
    assert w.tolist() == pytest.approx(want, rel=1e-12)
    assert bool(((w >= 0.4) & (w <= 0.8)).all())
    w13204 = tree_weights(parents=parents, max_descendants=13204)
    assert float(w13204[0]) == pytest.approx(0.4 + 0.4 * math.log(7) / math.log(13206))


def test_tree_three_nodes_hand_formula() -> None:
    q = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, -2.0]], dtype=torch.float64)
    out = tree_aggregate(queries=q, parents=[-1, 0, 0])
    w = 0.4 + 0.4 * math.log(4) / math.log(5)
    mean = torch.tensor([4.0, 0.0], dtype=torch.float64)
    assert torch.allclose(out[0], (1 - w) * q[0] + w * mean)
    assert torch.equal(out[1:], q[1:])  # leaves unchanged


def test_tree_bottom_up_uses_updated_children() -> None:
    """A chain 0 <- 1 <- 2: node 1 is updated first, node 0 then sees the new node 1."""
    q = torch.tensor([[0.0], [1.0], [10.0]], dtype=torch.float64)
    w = torch.tensor([0.5, 0.25, 0.7], dtype=torch.float64)
    out = tree_aggregate(queries=q, parents=[-1, 0, 1], weights=w)
    q1 = 0.75 * 1.0 + 0.25 * 10.0
    assert out[:, 0].tolist() == pytest.approx([0.5 * q1, q1, 10.0])
    # merged depths (release: levels 8, 9 -> 7): both parents updated at once from old values
    merged = tree_aggregate(queries=q, parents=[-1, 0, 1], weights=w, merge_depth=0)
    assert merged[:, 0].tolist() == pytest.approx([0.5 * 1.0, q1, 10.0])


def test_tree_batched_and_module() -> None:
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    parents = [-1, 0, 0, 2]
    out = tree_aggregate(queries=q, parents=parents)
    for b in range(2):
        assert torch.allclose(out[b], tree_aggregate(queries=q[b], parents=parents))
    mod = CategoryTreeAggregation(parents=parents, dim=3).double()
    ln = torch.nn.functional.layer_norm(out, (3,))
    assert torch.allclose(mod(q), ln)
    assert tree_depths(parents) == [0, 1, 1, 2]


# ---------------------------------------------------------------- selection and head


def test_top_k_at_least_c_selects_everything_and_head_equals_full() -> None:
    g = torch.Generator().manual_seed(4)
    sel_logits = torch.randn(2, 5, generator=g)
    idx = select_top_k(logits=sel_logits, k=9)
    assert idx.shape == (2, 5)
    assert sorted(idx[0].tolist()) == list(range(5))
    queries = torch.randn(2, 3, 8, generator=g)
    cats = torch.randn(5, 8, generator=g)
    chosen = cats[idx]  # (2, 5, 8)
    head = contrastive_logits(queries=queries, categories=chosen)
    full = contrastive_logits(queries=queries, categories=cats.expand(2, 5, 8))
    for b in range(2):
        assert torch.allclose(head[b], full[b][:, idx[b]], atol=1e-6)


def test_top_k_order_and_positive_map_without_forcing() -> None:
    idx = select_top_k(logits=torch.tensor([[0.1, 3.0, -1.0, 2.0]]), k=2)
    assert idx.tolist() == [[1, 3]]
    pm = category_positive_map(labels=torch.tensor([3, 0, 1]), selected=idx[0])
    assert pm.tolist() == [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]  # class 0 missed: all zero


def test_contrastive_logits_formula_and_padding() -> None:
    q = torch.tensor([[[1.0, 2.0, 0.0, 1.0]]])
    e = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, False]])
    out = contrastive_logits(queries=q, categories=e, bias=-4.6, valid=valid)
    assert float(out[0, 0, 0]) == pytest.approx(4.0 / 2.0 - 4.6)
    assert out[0, 0, 1] == float("-inf")
    head = CategoryContrastiveHead()
    assert float(head.bias.detach()) == pytest.approx(-math.log(99.0))


# ---------------------------------------------------------------- gradient share


def _naive_focal(z: float, y: float, a: float, g: float) -> float:
    p = _sig(z)
    if y > 0:
        return -a * (1 - p) ** g * math.log(p)
    return -(1 - a) * p**g * math.log(1 - p)


def test_focal_gradient_matches_finite_differences() -> None:
    zs = [-6.0, -1.3, 0.0, 0.4, 2.5]
    for y in (0.0, 1.0):
        z = torch.tensor(zs, dtype=torch.float64)
        got = focal_logit_gradient(logits=z, targets=torch.full_like(z, y))
        h = 1e-6
        for i, v in enumerate(zs):
            fd = (_naive_focal(v + h, y, 0.25, 2.0) - _naive_focal(v - h, y, 0.25, 2.0)) / (2 * h)
            assert float(got[i]) == pytest.approx(fd, rel=1e-6, abs=1e-12)


def test_focal_gradient_matches_autograd() -> None:
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(3, 7, generator=g) < 0.3).double()
    p = torch.sigmoid(z)
    fl = -(0.25 * y * (1 - p) ** 2 * torch.log(p) + 0.75 * (1 - y) * p**2 * torch.log(1 - p))
    fl.sum().backward()
    assert torch.allclose(focal_logit_gradient(logits=z.detach(), targets=y), z.grad)


@pytest.mark.parametrize("gamma", [2.0, 0.0])
def test_positive_share_falls_as_easy_negatives_are_added(gamma: float) -> None:
    shares = []
    for n_neg in (1, 10, 100, 1000, 10000):
        z = torch.cat([torch.tensor([0.0]), torch.full((n_neg,), -6.0)])[None]
        y = torch.zeros_like(z)
        y[0, 0] = 1
        shares.append(gradient_share(logits=z, targets=y, gamma=gamma).share)
    assert all(b < a for a, b in itertools.pairwise(shares))
    if gamma == 0.0:  # plain sigmoid BCE: 10^4 easy negatives swamp the positive
        assert shares[-1] < 0.05 < 0.9 < shares[0]
    else:  # focal (1 - p_t)^2 damps z = -6 negatives ~400x: the fall is slow
        assert shares[-1] > 0.9


def test_selection_restores_the_positive_share() -> None:
    z = torch.cat([torch.tensor([0.0, 1.0, 0.5]), torch.full((997,), -6.0)])[None]
    y = torch.zeros_like(z)
    y[0, 0] = 1
    full = gradient_share(logits=z, targets=y)
    cand = torch.zeros_like(z, dtype=torch.bool)
    cand[0, select_top_k(logits=z, k=3)[0]] = True
    sel = gradient_share(logits=z, targets=y, candidates=cand)
    assert sel.share > full.share
    assert sel.positive == pytest.approx(full.positive)
    # a positive the selection missed gets no positive gradient at all
    cand2 = cand.clone()
    cand2[0, 0] = False
    assert gradient_share(logits=z, targets=y, candidates=cand2).positive == 0.0


# ---------------------------------------------------------------- errors and repr


def test_errors_name_the_function_and_argument() -> None:
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"asymmetric_loss: targets"):
        asymmetric_loss(logits=z, targets=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"asymmetric_loss: gamma_neg"):
        asymmetric_loss(logits=z, targets=z, gamma_neg=-1.0)
    with pytest.raises(TypeError, match=r"asymmetric_loss: mask"):
        asymmetric_loss(logits=z, targets=z, mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"tree_aggregate: parents\[1\]"):
        tree_aggregate(queries=torch.zeros(2, 1), parents=[-1, 1])
    with pytest.raises(ValueError, match=r"tree_depths: parents contains a cycle"):
        tree_depths([1, 0])
    with pytest.raises(ValueError, match=r"tree_aggregate: queries"):
        tree_aggregate(queries=torch.zeros(3, 2), parents=[-1, 0])
    with pytest.raises(ValueError, match=r"select_top_k: k"):
        select_top_k(logits=z, k=0)
    with pytest.raises(TypeError, match=r"gradient_share: candidates"):
        gradient_share(logits=z, targets=z, candidates=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"contrastive_logits: queries"):
        contrastive_logits(queries=torch.zeros(1, 2, 3), categories=torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"CQDINOSelectionLoss: clip"):
        CQDINOSelectionLoss(clip=-0.1)
    with pytest.raises(TypeError, match=r"CategoryTreeAggregation: dim"):
        CategoryTreeAggregation(parents=[-1], dim=2.0)  # type: ignore[arg-type]


def test_reprs() -> None:
    assert "gamma_neg=7.0" in repr(CQDINOSelectionLoss())
    assert "parents=3 nodes" in repr(CQDINOSelectionLoss(parents=[-1, 0, 0]))
    assert "num_categories=2, dim=4" in repr(CategoryTreeAggregation(parents=[-1, 0], dim=4))


# --- the image-guided selector (LearnableCategoryQueryTree + tagbertmodel.BertLayer, 030f0e1)


def test_cross_attention_matches_naive_loop() -> None:
    from posneg.detection.cq_dino import cross_attention

    g = torch.Generator().manual_seed(0)
    b, nq, nl, dim, h = 2, 3, 4, 6, 2
    q = torch.randn(b, nq, dim, generator=g, dtype=torch.float64)
    k = torch.randn(b, nl, dim, generator=g, dtype=torch.float64)
    v = torch.randn(b, nl, dim, generator=g, dtype=torch.float64)
    got = cross_attention(queries=q, keys=k, values=v, num_heads=h)
    d = dim // h
    for bi in range(b):
        for i in range(nq):
            for head in range(h):
                sl = slice(head * d, (head + 1) * d)
                s = [float(q[bi, i, sl] @ k[bi, j, sl]) / math.sqrt(d) for j in range(nl)]
                m = max(s)
                e = [math.exp(x - m) for x in s]
                w = [x / sum(e) for x in e]
                ref = sum(w[j] * v[bi, j, sl] for j in range(nl))
                assert torch.allclose(got[bi, i, sl], ref)


def test_image_tokens_prepend_the_pooled_token() -> None:
    from posneg.detection.cq_dino import image_tokens

    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).view(2, 3, 2, 2)
    t = image_tokens(features=x)
    assert t.shape == (2, 5, 3)
    assert torch.equal(t[:, 0], x.mean(dim=(2, 3)))
    assert torch.equal(t[1, 1:], x[1].flatten(1).T)


def _selector(**kw):  # type: ignore[no-untyped-def]
    from posneg.detection.cq_dino import CategoryQuerySelector

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        emb = torch.randn(7, 8)
        return CategoryQuerySelector(
            embeddings=emb, image_dim=5, encoder_width=6, num_heads=2, k=3, **kw
        ).double()


def _released_selector(sel, feats):  # type: ignore[no-untyped-def]
    """``LearnableCategoryQueryTree.forward`` + ``generate`` with ``BertLayer(mode='tagging')``,
    followed op by op (transpose_for_scores, additive all-valid mask, GELU, LayerNorm eps 1e-12)."""
    b, c_img = feats.shape[:2]
    label = torch.relu(sel.wordvec_proj(sel.embeddings))
    x = feats.view(b, c_img, -1)
    cls_tok = torch.nn.AdaptiveAvgPool1d(1)(x)
    x = torch.cat([cls_tok, x], dim=2).transpose(1, 2)
    x = sel.image_proj(x)
    mask = (1.0 - torch.ones(b, 1, 1, x.shape[1], dtype=x.dtype)) * -10000.0
    label = label.unsqueeze(0).repeat(b, 1, 1)
    if sel.parents is not None:
        label = tree_aggregate(queries=label, parents=sel.parents)
    h = sel.label_norm(label)
    for layer in sel.layers:
        heads, dim = layer.heads, h.shape[-1]
        d = dim // heads

        def tfs(t, heads=heads, d=d):  # type: ignore[no-untyped-def]
            return t.view(*t.shape[:-1], heads, d).permute(0, 2, 1, 3)

        scores = tfs(layer.query(h)) @ tfs(layer.key(x)).transpose(-1, -2) / math.sqrt(d) + mask
        ctx = (torch.softmax(scores, -1) @ tfs(layer.value(x))).permute(0, 2, 1, 3)
        ctx = ctx.contiguous().view(b, -1, dim)
        a = torch.nn.functional.layer_norm(
            layer.attn_out(ctx) + h, (dim,), layer.attn_norm.weight, layer.attn_norm.bias, 1e-12
        )
        inter = torch.nn.functional.gelu(layer.ffn_in(a))
        h = torch.nn.functional.layer_norm(
            layer.ffn_out(inter) + a, (dim,), layer.ffn_norm.weight, layer.ffn_norm.bias, 1e-12
        )
    logits = sel.fc(h).squeeze(-1)
    return logits, torch.topk(logits, k=min(sel.k, logits.shape[1]), dim=-1).indices


@pytest.mark.parametrize("parents", [None, [-1, 0, 0, 1, 1, -1, 5]])
def test_selector_matches_released_forward(parents) -> None:  # type: ignore[no-untyped-def]
    sel = _selector(parents=parents)
    feats = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = sel(feats)
    ref_logits, ref_top = _released_selector(sel, feats)
    assert torch.allclose(out.logits, ref_logits, atol=1e-12)
    assert torch.equal(out.selected, ref_top)
    assert out.queries.shape == (2, 7, 8)


def test_selector_k_at_least_c_keeps_every_category_and_trains() -> None:
    from posneg.detection.cq_dino import CategoryQuerySelector

    sel = CategoryQuerySelector(
        embeddings=torch.randn(4, 8, generator=torch.Generator().manual_seed(2)),
        image_dim=3,
        encoder_width=4,
        num_heads=4,
        num_layers=1,
        k=10,
    )
    out = sel(torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(3)))
    assert sorted(out.selected[0].tolist()) == [0, 1, 2, 3]
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 1]])
    asymmetric_loss(logits=out.logits, targets=targets).backward()
    assert sel.embeddings.grad is not None and float(sel.embeddings.grad.abs().sum()) > 0
    assert sel.image_proj.weight.grad is not None


def test_selector_image_changes_the_logits() -> None:
    sel = _selector()
    g = torch.Generator().manual_seed(4)
    a = sel(torch.randn(1, 5, 2, 2, generator=g, dtype=torch.float64)).logits
    b = sel(torch.randn(1, 5, 2, 2, generator=g, dtype=torch.float64)).logits
    assert not torch.allclose(a, b)


def test_selector_errors_and_repr() -> None:
    from posneg.detection.cq_dino import CategoryQuerySelector, cross_attention, image_tokens

    with pytest.raises(ValueError, match="CategoryQuerySelector: num_heads"):
        CategoryQuerySelector(embeddings=torch.randn(3, 6), image_dim=2, num_heads=4)
    with pytest.raises(ValueError, match="CategoryQuerySelector: parents"):
        CategoryQuerySelector(embeddings=torch.randn(3, 4), image_dim=2, parents=[-1, 0])
    with pytest.raises(ValueError, match="CategoryQuerySelector: features"):
        _selector()(torch.randn(1, 4, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="image_tokens: features"):
        image_tokens(features=torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="cross_attention: num_heads"):
        cross_attention(
            queries=torch.randn(1, 2, 6),
            keys=torch.randn(1, 3, 6),
            values=torch.randn(1, 3, 6),
            num_heads=4,
        )
    r = repr(_selector(parents=[-1, 0, 0, 1, 1, -1, 5]))
    assert "num_categories=7" in r and "num_heads=2" in r and "k=3" in r and "7 nodes" in r
