"""STAR loss: naive float64 formula, the card's tests, properties, errors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mining.strategies import STARLoss, star_loss


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def naive_star(
    q: torch.Tensor,
    d: torch.Tensor,
    h: torch.Tensor | None,
    relevant: torch.Tensor | None,
    hard_relevant: torch.Tensor | None,
    temperature: float = 1.0,
) -> tuple[float, int]:
    """(sum of pair losses, number of pairs) from the card's definition, loop by loop."""
    b = q.shape[0]
    total, count = 0.0, 0
    for i in range(b):
        s_pos = float(q[i] @ d[i]) / temperature
        for j in range(b):
            if j == i or (relevant is not None and bool(relevant[i, j])):
                continue
            total += _softplus(float(q[i] @ d[j]) / temperature - s_pos)
            count += 1
        if h is not None:
            for m in range(h.shape[0]):
                if hard_relevant is not None and bool(hard_relevant[i, m]):
                    continue
                total += _softplus(float(q[i] @ h[m]) / temperature - s_pos)
                count += 1
    return total, count


def _data(seed: int, b: int = 5, n_hard: int = 4, d: int = 6) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64)
    p = torch.randn(b, d, generator=g, dtype=torch.float64)
    h = torch.randn(n_hard, d, generator=g, dtype=torch.float64)
    rel = torch.rand(b, b, generator=g) < 0.3
    hrel = torch.rand(b, n_hard, generator=g) < 0.3
    return q, p, h, rel, hrel


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_formula_float64(chunk_size: int | None) -> None:
    q, p, h, rel, hrel = _data(0)
    total, count = naive_star(q, p, h, rel, hrel, temperature=0.7)
    kw = {"relevant": rel, "hard_relevant": hrel, "temperature": 0.7, "chunk_size": chunk_size}
    assert math.isclose(float(star_loss(q, p, h, **kw)), total / count, rel_tol=1e-10)
    assert math.isclose(float(star_loss(q, p, h, reduction="sum", **kw)), total, rel_tol=1e-10)
    per_query = star_loss(q, p, h, reduction="none", **kw)
    assert per_query.shape == (5,) and per_query.dtype == torch.float64
    assert math.isclose(float(per_query.sum()), total, rel_tol=1e-10)


def test_formula_without_masks_and_without_hard() -> None:
    q, p, h, _, _ = _data(1)
    total, count = naive_star(q, p, h, None, None)
    assert math.isclose(float(star_loss(q, p, h)), total / count, rel_tol=1e-10)
    total, count = naive_star(q, p, None, None, None)
    assert count == 5 * 4
    assert math.isclose(float(star_loss(q, p)), total / count, rel_tol=1e-10)


def test_matches_drhard_inbatch_train_written_out() -> None:
    """DRhard's inbatch_train (log_softmax over [pos, other] pairs, rel_pair_mask = 1 - relevant,
    hard_pair_mask) transcribed in plain torch: the same number."""
    q, p, h, rel, hrel = _data(2)
    rel = rel.clone()
    rel.fill_diagonal_(True)
    scores = q @ p.T
    pos = scores.diagonal()
    b = q.shape[0]
    logits = torch.stack([pos.repeat_interleave(b), scores.reshape(-1)], dim=1)
    first = -(torch.log_softmax(logits, 1)[:, 0] * (~rel).double().reshape(-1))
    other = (q @ h.T).reshape(-1)
    logits2 = torch.stack([pos.repeat_interleave(h.shape[0]), other], dim=1)
    second = -(torch.log_softmax(logits2, 1)[:, 0] * (~hrel).double().reshape(-1))
    ref = (first.sum() + second.sum()) / ((~rel).sum() + (~hrel).sum())
    torch.testing.assert_close(star_loss(q, p, h, relevant=rel, hard_relevant=hrel), ref)


def test_card_masking_removes_exactly_one_pair() -> None:
    """Card test 3: masking a relevant in-batch document removes exactly its pair."""
    q, p, h, _, _ = _data(3)
    total, count = naive_star(q, p, h, None, None)
    rel = torch.zeros(5, 5, dtype=torch.bool)
    rel[1, 3] = True
    pair = _softplus(float(q[1] @ p[3]) - float(q[1] @ p[1]))
    masked = star_loss(q, p, h, relevant=rel)
    assert math.isclose(float(masked), (total - pair) / (count - 1), rel_tol=1e-10)
    none_full = star_loss(q, p, h, reduction="none")
    none_masked = star_loss(q, p, h, relevant=rel, reduction="none")
    diff = none_full - none_masked
    assert math.isclose(float(diff[1]), pair, rel_tol=1e-10)
    assert bool((diff[torch.arange(5) != 1].abs() < 1e-12).all())


def test_diagonal_of_relevant_is_ignored() -> None:
    q, p, h, rel, hrel = _data(4)
    on = rel.clone()
    on.fill_diagonal_(True)
    off = rel.clone()
    off.fill_diagonal_(False)
    a = star_loss(q, p, h, relevant=on, hard_relevant=hrel)
    b = star_loss(q, p, h, relevant=off, hard_relevant=hrel)
    torch.testing.assert_close(a, b)


def test_all_masked_warns_and_returns_connected_zero() -> None:
    q = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(3, 4, dtype=torch.float64)
    rel = torch.ones(3, 3, dtype=torch.bool)
    with pytest.warns(RuntimeWarning, match="every pair is masked"):
        out = star_loss(q, p, relevant=rel)
    assert float(out.detach()) == 0.0
    out.backward()
    assert q.grad is not None and float(q.grad.abs().sum()) == 0.0
    with pytest.warns(RuntimeWarning, match="every pair is masked"):
        star_loss(q[:1], p[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        star_loss(q[:1], p[:1], torch.randn(2, 4, dtype=torch.float64))  # hard pairs remain


def test_normalize_gives_cosine_scores() -> None:
    q, p, h, rel, hrel = _data(5)
    a = star_loss(q * 3.0, p * 0.5, h * 2.0, relevant=rel, hard_relevant=hrel, normalize=True)
    qn, pn, hn = (torch.nn.functional.normalize(x, dim=1) for x in (q, p, h))
    b = star_loss(qn, pn, hn, relevant=rel, hard_relevant=hrel)
    torch.testing.assert_close(a, b)


def test_gradient_pushes_positive_up() -> None:
    """With orthonormal queries and positives, each positive's own coordinate is pushed up."""
    q = torch.eye(4, dtype=torch.float64)
    p = torch.eye(4, dtype=torch.float64).requires_grad_(True)
    star_loss(q, p).backward()
    assert p.grad is not None
    assert bool((p.grad.diagonal() < 0).all())


def test_half_inputs_compute_in_float32() -> None:
    q, p, h, rel, hrel = _data(6)
    for dtype in (torch.float16, torch.bfloat16):
        out = star_loss(q.to(dtype), p.to(dtype), h.to(dtype), relevant=rel, hard_relevant=hrel)
        assert out.dtype == torch.float32
        ref = star_loss(
            q.to(dtype).float(),
            p.to(dtype).float(),
            h.to(dtype).float(),
            relevant=rel,
            hard_relevant=hrel,
        )
        torch.testing.assert_close(out, ref)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6),
    n_hard=st.integers(0, 5),
    d=st.integers(1, 5),
    chunk=st.sampled_from([None, 1, 3]),
    seed=st.integers(0, 10_000),
)
def test_hypothesis_matches_naive(
    b: int, n_hard: int, d: int, chunk: int | None, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64)
    p = torch.randn(b, d, generator=g, dtype=torch.float64)
    h = torch.randn(n_hard, d, generator=g, dtype=torch.float64) if n_hard else None
    rel = torch.rand(b, b, generator=g) < 0.3
    hrel = torch.rand(b, n_hard, generator=g) < 0.3 if n_hard else None
    total, count = naive_star(q, p, h, rel, hrel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = star_loss(q, p, h, relevant=rel, hard_relevant=hrel, chunk_size=chunk)
    expected = total / count if count else 0.0
    assert math.isclose(float(out), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_module() -> None:
    loss = STARLoss(temperature=0.5, normalize=True, reduction="sum", chunk_size=2)
    text = repr(loss)
    for part in ("temperature=0.5", "normalize=True", "reduction='sum'", "chunk_size=2"):
        assert part in text
    q, p, h, rel, hrel = _data(7)
    torch.testing.assert_close(
        loss(q, p, h, rel, hrel),
        star_loss(
            q,
            p,
            h,
            relevant=rel,
            hard_relevant=hrel,
            temperature=0.5,
            normalize=True,
            reduction="sum",
        ),
    )


def test_errors() -> None:
    q, p, h, rel, hrel = _data(8)
    with pytest.raises(TypeError, match=r"star_loss: query must be a torch\.Tensor"):
        star_loss(q.tolist(), p)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"star_loss: pos_doc must have shape \(B, D\) matching"):
        star_loss(q, p[:3])
    with pytest.raises(TypeError, match="pos_doc has dtype"):
        star_loss(q, p.float())
    with pytest.raises(ValueError, match=r"hard_doc must have shape \(H, D\)"):
        star_loss(q, p, h[0])
    with pytest.raises(ValueError, match="hard_doc must have dimension D=6"):
        star_loss(q, p, h[:, :3])
    with pytest.raises(TypeError, match="hard_doc has dtype"):
        star_loss(q, p, h.float())
    with pytest.raises(TypeError, match="relevant must be a bool tensor"):
        star_loss(q, p, h, relevant=rel.long())
    with pytest.raises(ValueError, match=r"relevant must have shape \(5, 5\)"):
        star_loss(q, p, h, relevant=rel[:4])
    with pytest.raises(ValueError, match=r"hard_relevant must have shape \(5, 4\)"):
        star_loss(q, p, h, hard_relevant=hrel[:, :3])
    with pytest.raises(ValueError, match="hard_relevant was given without hard_doc"):
        star_loss(q, p, hard_relevant=hrel)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        star_loss(q, p, temperature=0.0)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        star_loss(q, p, normalize=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction must be one of"):
        star_loss(q, p, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        star_loss(q, p, chunk_size=0)
    with pytest.raises(ValueError, match="STARLoss: temperature must be > 0"):
        STARLoss(temperature=-1.0)
    with pytest.raises(TypeError, match="STARLoss: normalize must be a bool"):
        STARLoss(normalize="yes")  # type: ignore[arg-type]


def test_gradcheck_through_row_blocks() -> None:
    """Gradients through the checkpointed row blocks (chunk_size < B) match finite differences."""
    q, p, h, rel, hrel = _data(9, b=4, n_hard=2, d=3)
    leaves = tuple(x.clone().requires_grad_(True) for x in (q, p, h))

    def fn(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return star_loss(a, b, c, relevant=rel, hard_relevant=hrel, normalize=True, chunk_size=1)

    assert torch.autograd.gradcheck(fn, leaves)
