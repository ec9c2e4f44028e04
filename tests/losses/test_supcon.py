"""SupCon (Khosla et al., NeurIPS 2020): formula, pytorch-metric-learning, properties, errors."""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers

from posneg.losses.supcon import SupConLoss, supcon, supcon_has_positive


def naive_supcon(
    features: torch.Tensor, labels: torch.Tensor, temperature: float, normalize: bool = True
) -> list[float | None]:
    """L_out of the paper (Eq. 2), one anchor at a time in float64; None without a positive."""
    z = features.detach().to(torch.float64)
    if normalize:
        z = z / z.norm(dim=1, keepdim=True)
    n = z.shape[0]
    out: list[float | None] = []
    for i in range(n):
        others = [a for a in range(n) if a != i]
        positives = [p for p in others if int(labels[p]) == int(labels[i])]
        if not positives:
            out.append(None)
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / temperature) for a in others)
        total = 0.0
        for p in positives:
            total += math.log(math.exp(float(z[i] @ z[p]) / temperature) / denom)
        out.append(-total / len(positives))
    return out


def _batch(
    n: int, d: int, n_classes: int, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, n_classes, (n,), generator=g)
    return z, y


# --- 1. formula ------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_matches_naive_formula_several_positives(
    temperature: float, chunk_size: int | None
) -> None:
    z, y = _batch(14, 6, 3, seed=1)  # 14 samples in 3 classes: several positives per anchor
    expected = naive_supcon(z, y, temperature)
    assert all(v is not None for v in expected)
    got = supcon(z, y, temperature=temperature, reduction="none", chunk_size=chunk_size)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    mean = supcon(z, y, temperature=temperature, chunk_size=chunk_size)
    torch.testing.assert_close(mean, torch.tensor(sum(expected) / len(expected)).double())  # type: ignore[arg-type]
    total = supcon(z, y, temperature=temperature, reduction="sum", chunk_size=chunk_size)
    torch.testing.assert_close(total, torch.tensor(sum(expected)).double())  # type: ignore[arg-type]


def test_matches_naive_without_normalisation() -> None:
    z, y = _batch(10, 4, 2, seed=2)
    z = 0.3 * z
    expected = torch.tensor(naive_supcon(z, y, 0.5, normalize=False), dtype=torch.float64)
    got = supcon(z, y, temperature=0.5, normalize=False, reduction="none")
    torch.testing.assert_close(got, expected)


def test_anchors_without_positive_are_excluded_and_nan_in_none() -> None:
    z, _ = _batch(9, 5, 2, seed=3)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 1])  # anchors 5, 6, 7 have no positive
    expected = naive_supcon(z, y, 0.2)
    got = supcon(z, y, temperature=0.2, reduction="none")
    mask = supcon_has_positive(y)
    assert mask.tolist() == [v is not None for v in expected]
    assert torch.isnan(got[~mask]).all()
    valid = [v for v in expected if v is not None]
    torch.testing.assert_close(got[mask], torch.tensor(valid, dtype=torch.float64))
    torch.testing.assert_close(
        supcon(z, y, temperature=0.2), torch.tensor(sum(valid) / len(valid)).double()
    )
    torch.testing.assert_close(
        supcon(z, y, temperature=0.2, reduction="sum"), torch.tensor(sum(valid)).double()
    )


def test_single_class_batch_is_defined() -> None:
    # every other sample is a positive and in the denominator: the formula is defined
    z, _ = _batch(6, 3, 1, seed=4)
    y = torch.zeros(6, dtype=torch.long)
    expected = naive_supcon(z, y, 0.3)
    got = supcon(z, y, temperature=0.3, reduction="none")
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


# --- 2. reference: pytorch-metric-learning ---------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature", [0.1, 0.7])
def test_equals_pml_supcon(seed: int, temperature: float) -> None:
    z, y = _batch(24, 8, 4, seed=seed)
    assert supcon_has_positive(y).all()
    ours = supcon(z, y, temperature=temperature)
    ref = pml_losses.SupConLoss(temperature=temperature)(z, y)
    torch.testing.assert_close(ours, ref)


def test_equals_pml_supcon_gradients() -> None:
    z, y = _batch(16, 5, 3, seed=5)
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    supcon(z1, y, temperature=0.2).backward()
    pml_losses.SupConLoss(temperature=0.2)(z2, y).backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def test_pml_semantics_for_anchors_without_positive() -> None:
    # PML gives such anchors a 0 per-anchor loss; its default AvgNonZeroReducer then skips the
    # zeros, so its mean equals our "exclude" mean, and our "none" has NaN where PML has 0.
    z, _ = _batch(12, 6, 2, seed=6)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 4, 5, 5, 6, 0])
    ref_mean = pml_losses.SupConLoss(temperature=0.1)(z, y)
    torch.testing.assert_close(supcon(z, y, temperature=0.1), ref_mean)
    ref_each = pml_losses.SupConLoss(temperature=0.1, reducer=pml_reducers.DoNothingReducer())(z, y)
    per_anchor = ref_each["loss"]["losses"]
    ours = supcon(z, y, temperature=0.1, reduction="none")
    mask = supcon_has_positive(y)
    torch.testing.assert_close(ours[mask], per_anchor[mask])
    assert (per_anchor[~mask] == 0).all()  # the silent 0 this library does not return
    assert torch.isnan(ours[~mask]).all()


def test_pml_returns_zero_where_we_differ() -> None:
    # PML: no positive pair at all -> 0 (the PML issue #744 case); ours: warning + connected 0.
    z, _ = _batch(5, 3, 1, seed=7)
    y = torch.arange(5)
    assert float(pml_losses.SupConLoss()(z, y)) == 0.0
    zz = z.clone().requires_grad_(True)
    with pytest.warns(UserWarning, match="no anchor has a positive"):
        loss = supcon(zz, y)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    assert zz.grad is not None and (zz.grad == 0).all()


def reference_supcon(
    features: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
) -> torch.Tensor:
    """Transcription of HobbitLong/SupContrast ``losses.py::SupConLoss.forward`` (commit
    66a8fe53880d6a1084b2e4e0db0a019024d6d41a), ``contrast_mode="all"``, in float64.

    ``features`` is (bsz, n_views, D), not normalised inside (the caller normalises), as there.
    An anchor without a positive has ``mask_pos_pairs`` set to 1, so its mean log-probability
    is 0, and the final ``.mean()`` runs over all ``n_views * bsz`` anchors.
    """
    f = features.detach().to(torch.float64)
    bsz, views = f.shape[0], f.shape[1]
    y = labels.view(-1, 1)
    mask = torch.eq(y, y.T).to(torch.float64)
    contrast = torch.cat(torch.unbind(f, dim=1), dim=0)
    scores = contrast @ contrast.T / temperature
    logits = scores - scores.max(dim=1, keepdim=True).values
    mask = mask.repeat(views, views)
    logits_mask = torch.ones_like(mask)
    logits_mask[torch.arange(bsz * views), torch.arange(bsz * views)] = 0
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    pairs = mask.sum(1)
    pairs = torch.where(pairs < 1e-6, torch.ones_like(pairs), pairs)
    mean_log_prob_pos = (mask * log_prob).sum(1) / pairs
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    return loss.view(views, bsz).mean()


def _issue_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Labels [0, 1, 1, 2], one view: anchors 0 and 3 have no positive (issue 11's case)."""
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(4, 8, generator=g, dtype=torch.float64), dim=1)
    return z, torch.tensor([0, 1, 1, 2])


def test_zero_mode_equals_reference_transcription() -> None:
    z, y = _issue_batch()
    ref = reference_supcon(z.unsqueeze(1), y, temperature=0.07)
    torch.testing.assert_close(supcon(z, y, temperature=0.07, no_positive="zero"), ref)
    # the default differs on purpose: the mean runs over the two anchors that have a positive
    excluded = supcon(z, y, temperature=0.07)
    torch.testing.assert_close(excluded, 2 * ref)
    assert not torch.isclose(excluded, ref)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_zero_mode_equals_reference_two_views(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    bsz = 7
    feats = torch.nn.functional.normalize(
        torch.randn(bsz, 2, 5, generator=g, dtype=torch.float64), dim=2
    )
    y = torch.randint(0, 3, (bsz,), generator=g)
    rows = torch.cat([feats[:, 0], feats[:, 1]])  # the reference's torch.cat(unbind(dim=1))
    ours = supcon(rows, torch.cat([y, y]), temperature=0.1, no_positive="zero")
    torch.testing.assert_close(ours, reference_supcon(feats, y, 0.1, base_temperature=0.1))
    # with two views every anchor has a positive: all three modes agree
    torch.testing.assert_close(ours, supcon(rows, torch.cat([y, y]), temperature=0.1))


def test_zero_mode_reductions_and_empty_batch() -> None:
    z, _ = _batch(9, 5, 2, seed=3)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 1])
    each = supcon(z, y, temperature=0.2, no_positive="zero", reduction="none")
    mask = supcon_has_positive(y)
    assert (each[~mask] == 0).all()
    torch.testing.assert_close(each[mask], supcon(z, y, temperature=0.2, reduction="none")[mask])
    torch.testing.assert_close(supcon(z, y, temperature=0.2, no_positive="zero"), each.sum() / 9)
    torch.testing.assert_close(
        supcon(z, y, temperature=0.2, no_positive="zero", reduction="sum"),
        supcon(z, y, temperature=0.2, reduction="sum"),
    )
    # no positive at all: the reference's 0, connected, and no warning
    zz = z[:5].clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = supcon(zz, torch.arange(5), no_positive="zero")
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert zz.grad is not None and (zz.grad == 0).all()
    ref = reference_supcon(z[:5].unsqueeze(1), torch.arange(5), temperature=0.1)
    assert float(ref) == 0.0


def test_zero_mode_module_and_repr() -> None:
    z, y = _issue_batch()
    module = SupConLoss(temperature=0.07, no_positive="zero")
    assert "no_positive='zero'" in repr(module)
    torch.testing.assert_close(module(z, y), supcon(z, y, temperature=0.07, no_positive="zero"))


# --- 3. properties ---------------------------------------------------------------------------


def test_two_views_with_unique_images_equals_nt_xent_loop() -> None:
    # each anchor's only positive is its other view: SupCon reduces to SimCLR's NT-Xent
    g = torch.Generator().manual_seed(8)
    z1, z2 = torch.randn(2, 6, 5, generator=g, dtype=torch.float64)
    feats = torch.cat([z1, z2])
    y = torch.arange(6).repeat(2)
    u = feats / feats.norm(dim=1, keepdim=True)
    t, n = 0.3, 12
    expected = []
    for i in range(n):
        p = (i + 6) % n
        denom = sum(math.exp(float(u[i] @ u[a]) / t) for a in range(n) if a != i)
        expected.append(-math.log(math.exp(float(u[i] @ u[p]) / t) / denom))
    got = supcon(feats, y, temperature=t, reduction="none")
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_clustered_features_give_lower_loss() -> None:
    g = torch.Generator().manual_seed(9)
    y = torch.arange(4).repeat_interleave(4)
    centres = torch.eye(4, 8, dtype=torch.float64)
    tight = centres[y] + 0.01 * torch.randn(16, 8, generator=g, dtype=torch.float64)
    mixed = torch.randn(16, 8, generator=g, dtype=torch.float64)
    assert supcon(tight, y) < supcon(mixed, y)
    # Per anchor, loss = logsumexp_A - mean_P >= log|P(i)| (log-sum-exp over A(i) is at least
    # the one over P(i), which exceeds the mean by at least log|P(i)|). Tight, orthogonal
    # clusters at a small temperature reach it: 3 positives per anchor give log 3.
    per = supcon(tight, y, temperature=0.05, reduction="none")
    torch.testing.assert_close(per, torch.full_like(per, math.log(3.0)), atol=1e-3, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 12),
    d=st.integers(1, 5),
    n_classes=st.integers(1, 4),
    chunk=st.integers(1, 13),
    seed=st.integers(0, 10_000),
)
def test_hypothesis_shapes_chunks_permutation(
    n: int, d: int, n_classes: int, chunk: int, seed: int
) -> None:
    z, y = _batch(n, d, n_classes, seed=seed)
    mask = supcon_has_positive(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        full = supcon(z, y, temperature=0.4, reduction="none")
        chunked = supcon(z, y, temperature=0.4, reduction="none", chunk_size=chunk)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        permuted = supcon(z[perm], y[perm], temperature=0.4, reduction="none")
        relabelled = supcon(z, 7 * y + 3, temperature=0.4, reduction="none")
        scaled = supcon(3.0 * z, y, temperature=0.4, reduction="none")
    assert full.shape == (n,)
    assert torch.equal(torch.isnan(full), ~mask)
    torch.testing.assert_close(chunked, full, equal_nan=True)
    torch.testing.assert_close(permuted, full[perm], equal_nan=True)
    torch.testing.assert_close(relabelled, full, equal_nan=True)
    torch.testing.assert_close(scaled, full, equal_nan=True)
    expected = naive_supcon(z, y, 0.4)
    for i, v in enumerate(expected):
        if v is not None:
            assert math.isclose(float(full[i]), v, rel_tol=1e-9, abs_tol=1e-9)


def test_nan_entries_do_not_poison_masked_gradients() -> None:
    z, _ = _batch(6, 4, 1, seed=10)
    y = torch.tensor([0, 0, 1, 1, 2, 3])
    zz = z.clone().requires_grad_(True)
    per = supcon(zz, y, reduction="none", chunk_size=2)
    per[supcon_has_positive(y)].sum().backward()
    assert zz.grad is not None and torch.isfinite(zz.grad).all()
    # anchors without a positive still act as negatives: their rows get gradient
    assert zz.grad[4:].abs().sum() > 0


def test_half_inputs_compute_in_float32() -> None:
    z, y = _batch(10, 6, 3, seed=11, dtype=torch.float32)
    for dt in (torch.float16, torch.bfloat16):
        out = supcon(z.to(dt), y)
        assert out.dtype == torch.float32 and torch.isfinite(out)
        torch.testing.assert_close(out, supcon(z.to(dt).float(), y))


def test_error_mode_accepts_complete_batches() -> None:
    z, y = _batch(12, 4, 3, seed=12)
    assert supcon_has_positive(y).all()
    torch.testing.assert_close(supcon(z, y, no_positive="error"), supcon(z, y))


def test_module_matches_function_and_pickles() -> None:
    z, y = _batch(12, 4, 3, seed=13)
    m = SupConLoss(temperature=0.3, reduction="sum", chunk_size=4)
    torch.testing.assert_close(m(z, y), supcon(z, y, temperature=0.3, reduction="sum"))
    m2 = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(m2(z, y), m(z, y))
    assert "temperature=0.3" in repr(m) and "no_positive='exclude'" in repr(m)


# --- 4. errors -------------------------------------------------------------------------------


def test_errors_features() -> None:
    y = torch.tensor([0, 0, 1, 1])
    with pytest.raises(TypeError, match=r"supcon: features must be a torch\.Tensor"):
        supcon([[1.0]], y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="supcon: features must be a floating-point tensor"):
        supcon(torch.ones(4, 3, dtype=torch.long), y)
    with pytest.raises(ValueError, match=r"supcon: features must have shape \(B, D\)"):
        supcon(torch.ones(4), y)
    with pytest.raises(ValueError, match=r"supcon: features must have at least 2 rows"):
        supcon(torch.ones(1, 3), torch.tensor([0]))
    bad = torch.ones(4, 3)
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="supcon: features contains NaN or inf"):
        supcon(bad, y)


def test_errors_labels() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(TypeError, match=r"supcon: labels must be a torch\.Tensor"):
        supcon(z, [0, 0, 1, 1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="supcon: labels must be an integer tensor"):
        supcon(z, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match="supcon: labels must be an integer tensor"):
        supcon(z, torch.tensor([True, True, False, False]))
    with pytest.raises(ValueError, match=r"supcon: labels must have shape \(4,\); got \(3,\)"):
        supcon(z, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"supcon: labels must have shape \(4,\)"):
        supcon(z, torch.tensor([[0, 0], [1, 1]]))
    with pytest.raises(ValueError, match="supcon: labels is on meta but the embeddings are on"):
        supcon(z, torch.zeros(4, dtype=torch.long, device="meta"))


def test_errors_hyperparameters() -> None:
    z = torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 1])
    for t in (0.0, -1.0):
        with pytest.raises(ValueError, match="supcon: temperature must be > 0"):
            supcon(z, y, temperature=t)
    with pytest.raises(ValueError, match="supcon: temperature must be finite"):
        supcon(z, y, temperature=float("inf"))
    with pytest.raises(TypeError, match="supcon: temperature must be a real number"):
        supcon(z, y, temperature="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="supcon: no_positive must be one of"):
        supcon(z, y, no_positive="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="supcon: reduction must be one of"):
        supcon(z, y, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="supcon: chunk_size must be >= 1"):
        supcon(z, y, chunk_size=0)
    with pytest.raises(TypeError, match="supcon: chunk_size must be an int"):
        supcon(z, y, chunk_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="supcon: normalize must be a bool"):
        supcon(z, y, normalize=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SupConLoss: temperature must be > 0"):
        SupConLoss(temperature=0.0)
    with pytest.raises(ValueError, match="SupConLoss: no_positive must be one of"):
        SupConLoss(no_positive="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SupConLoss: reduction must be one of"):
        SupConLoss(reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SupConLoss: chunk_size must be >= 1"):
        SupConLoss(chunk_size=0)
    with pytest.raises(TypeError, match="SupConLoss: normalize must be a bool"):
        SupConLoss(normalize="yes")  # type: ignore[arg-type]


def test_error_mode_raises_on_missing_positive() -> None:
    z = torch.randn(5, 3)
    y = torch.tensor([0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"supcon: every anchor must have a positive .* 1 of 5"):
        supcon(z, y, no_positive="error")
    with pytest.raises(ValueError, match="every anchor must have a positive"):
        SupConLoss(no_positive="error")(z, y)
