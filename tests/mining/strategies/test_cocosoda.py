"""CoCoSoDa (Shi et al., ICSE 2023): the multimodal contrastive loss, queues, momentum update and
soft data augmentation, against float64 loops transcribed from ``DeepSoftwareAnalytics/CoCoSoDa``
at commit 2f2bf8e7994acef846ede7c1078a0b18bc4154d9 (``model.py::Multi_Loss_CoCoSoDa.forward``,
``run.py::train`` / ``mask_tokens`` / ``replace_special_token_with_mask``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from posneg.mining.strategies.cocosoda import (
    CoCoSoDaLoss,
    CoCoSoDaQueues,
    cocosoda_loss,
    momentum_update,
    soda_augment,
    soda_mask_tokens,
    soda_replace_token_with_mask,
)


def unit(gen, *shape):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def naive(code_q, nl_q, code_k, nl_k, queues, t, ts, scale, inner=False):
    """The code's four (six) einsum blocks, row by row, CE averaged over all rows."""
    dirs = [
        (code_q, nl_q, "nl"),
        (code_q, nl_k, "masked_nl"),
        (nl_q, code_q, "code"),
        (nl_q, code_k, "masked_code"),
    ]
    if inner:
        dirs += [(code_q, code_k, "masked_code"), (nl_q, nl_k, "masked_nl")]
    total, n = 0.0, 0
    for a, b, qn in dirs:
        queue = queues.get(qn)
        for i in range(a.shape[0]):
            row = [ts * float(a[i] @ b[j]) / t for j in range(b.shape[0])]
            if queue is not None:
                row += [float(a[i] @ queue[k]) / t for k in range(queue.shape[0])]
            row = [scale * x for x in row]
            m = max(row)
            total += -(row[i] - m - math.log(sum(math.exp(x - m) for x in row)))
            n += 1
    return total / n


@pytest.mark.parametrize("inner", [False, True])
def test_formula_against_a_float64_loop(inner: bool) -> None:
    g = torch.Generator().manual_seed(0)
    b, d, k = 4, 6, 8
    xs = [unit(g, b, d) for _ in range(4)]
    queues = {n: unit(g, k, d) for n in ("code", "nl", "masked_code", "masked_nl")}
    got = cocosoda_loss(*xs, queues=queues, temperature=0.5, time_score=1.5, scale=2.0, inner=inner)
    want = naive(*xs, queues, 0.5, 1.5, 2.0, inner)
    assert float(got) == pytest.approx(want, rel=1e-10)


def test_card_1_no_queue_no_augmentation_is_twice_symmetric_infonce() -> None:
    """K = 0, code_k = code_q, nl_k = nl_q (m = 0, no augmentation): the value equals the
    symmetric in-batch InfoNCE with each direction counted twice (a mean: the same number)."""
    g = torch.Generator().manual_seed(1)
    c, n = unit(g, 5, 4), unit(g, 5, 4)
    got = cocosoda_loss(c, n, c.clone(), n.clone(), temperature=0.1, scale=1.0)
    labels = torch.arange(5)
    sym = (F.cross_entropy(c @ n.T / 0.1, labels) + F.cross_entropy(n @ c.T / 0.1, labels)) / 2
    assert float(got) == pytest.approx(float(sym), rel=1e-12)


def test_card_1_gradients_differ_because_keys_are_detached() -> None:
    g = torch.Generator().manual_seed(2)
    c, n = unit(g, 5, 4).requires_grad_(True), unit(g, 5, 4).requires_grad_(True)
    (gc,) = torch.autograd.grad(cocosoda_loss(c, n, c, n, scale=1.0, temperature=0.1), c)
    sym = F.cross_entropy(c @ n.T / 0.1, torch.arange(5)) + F.cross_entropy(
        n @ c.T / 0.1, torch.arange(5)
    )
    (gs,) = torch.autograd.grad(sym / 2, c)
    assert not torch.allclose(gc, gs)


def test_card_2_labels_are_the_diagonal() -> None:
    """Making row i's in-batch key equal to its query (and others orthogonal) drives the loss
    to ~0 only when the label is i."""
    e = torch.eye(4, dtype=torch.float64)
    assert float(cocosoda_loss(e, e, e, e, temperature=0.01)) < 1e-6
    perm = e[[1, 0, 3, 2]]
    assert float(cocosoda_loss(e, perm, e, perm, temperature=0.01)) > 1.0


def test_card_3_queues_wrap_by_batch_mod_k() -> None:
    qs = CoCoSoDaQueues(6, 2, dtype=torch.float64)
    for step in range(4):  # 4 batches of 4 into K = 6: pointer (4 * step) mod 6
        batch = torch.full((4, 2), float(step), dtype=torch.float64)
        qs.enqueue(batch, batch + 10, batch + 20, batch + 30)
    neg = qs.negatives()
    assert neg["code"].shape == (6, 2)
    assert neg["code"][:, 0].tolist() == [
        2.0,
        2.0,
        3.0,
        3.0,
        3.0,
        3.0,
    ]  # the newest 6, oldest first
    assert neg["masked_nl"][:, 0].tolist() == [32.0, 32.0, 33.0, 33.0, 33.0, 33.0]


def test_card_4_momentum_zero_copies_and_ema() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    a0 = a.weight.detach().clone()
    momentum_update(a, b, momentum=0.9)
    assert torch.allclose(a.weight, 0.9 * a0 + 0.1 * b.weight)
    momentum_update(a, b, momentum=0.0)
    assert torch.equal(a.weight, b.weight)


def test_card_5_mask_tokens_spares_prefix_special_and_pad() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randint(5, 50, (64, 30), generator=g)
    t[:, 10] = 0  # special
    t[:, 20:] = 1  # pad
    out = soda_mask_tokens(
        t,
        mask_token_id=4,
        vocab_size=50,
        special_ids=(0, 2),
        pad_id=1,
        probability=1.0,
        generator=g,
    )
    assert torch.equal(out[:, :3], t[:, :3])
    assert torch.equal(out[:, 10], t[:, 10]) and torch.equal(out[:, 20:], t[:, 20:])
    body = out[:, 3:10]
    frac_mask = float((body == 4).double().mean())
    assert 0.75 < frac_mask < 0.85  # 80% [MASK]
    assert float((body == t[:, 3:10]).double().mean()) > 0.05  # some kept (10% + random hits)


def test_mask_rates_at_the_default_probability() -> None:
    g = torch.Generator().manual_seed(3)
    t = torch.randint(10, 1000, (200, 203), generator=g)
    out = soda_mask_tokens(t, mask_token_id=5, vocab_size=1000, probability=0.1, generator=g)
    changed = float((out[:, 3:] != t[:, 3:]).double().mean())
    assert 0.08 < changed < 0.10  # 0.1 * (0.8 + 0.1 * 999/1000)


def test_soda_cycle_and_released_no_ops() -> None:
    g = torch.Generator().manual_seed(0)
    c = torch.randint(10, 100, (8, 40), generator=g)
    c[:, 5::3] = 7
    n = torch.randint(10, 100, (8, 20), generator=g)
    kw = {
        "mask_token_id": 4,
        "vocab_size": 100,
        "special_ids": (7,),
        "probability": 1.0,
        "generator": g,
    }
    for step in (1, 2, 5, 6):  # replace-with-type ops replace tokens by themselves
        ck, nk = soda_augment(c, n, step=step, **kw)
        assert torch.equal(ck, c) and torch.equal(nk, n)
    ck, nk = soda_augment(c, n, step=3, **kw)
    assert torch.equal(nk, n)  # NL only at step % 4 == 0
    assert set(ck[ck != c].tolist()) == {4} and bool((c[ck != c] == 7).all())
    ck, nk = soda_augment(c, n, step=4, **kw)
    assert not torch.equal(ck, c) and not torch.equal(nk, n)


def test_replace_token_rate_is_point_eight_p() -> None:
    g = torch.Generator().manual_seed(5)
    t = torch.full((400, 103), 7)
    out = soda_replace_token_with_mask(t, token_id=7, mask_token_id=0, probability=0.5, generator=g)
    assert 0.37 < float((out[:, 3:] == 0).double().mean()) < 0.43


def test_generator_determinism() -> None:
    t = torch.randint(10, 100, (4, 30), generator=torch.Generator().manual_seed(0))
    a = soda_mask_tokens(
        t, mask_token_id=1, vocab_size=9, generator=torch.Generator().manual_seed(9)
    )
    b = soda_mask_tokens(
        t, mask_token_id=1, vocab_size=9, generator=torch.Generator().manual_seed(9)
    )
    assert torch.equal(a, b)


def test_module_matches_function_and_repr() -> None:
    g = torch.Generator().manual_seed(0)
    xs = [unit(g, 3, 4) for _ in range(4)]
    m = CoCoSoDaLoss(temperature=0.2, inner=True)
    assert torch.equal(m(*xs), cocosoda_loss(*xs, temperature=0.2, inner=True))
    assert "temperature=0.2" in repr(m) and "inner=True" in repr(m)


def test_errors_name_the_argument() -> None:
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="cocosoda_loss: nl_q"):
        cocosoda_loss(x, torch.zeros(3, 5), x, x)
    with pytest.raises(ValueError, match="cocosoda_loss: temperature"):
        cocosoda_loss(x, x, x, x, temperature=0.0)
    with pytest.raises(ValueError, match="cocosoda_loss: unknown queues"):
        cocosoda_loss(x, x, x, x, queues={"foo": x})
    with pytest.raises(TypeError, match="soda_mask_tokens: tokens"):
        soda_mask_tokens(x, mask_token_id=1, vocab_size=3)
    with pytest.raises(ValueError, match="soda_mask_tokens: probability"):
        soda_mask_tokens(
            torch.zeros(2, 5, dtype=torch.long), mask_token_id=1, vocab_size=3, probability=2.0
        )
    with pytest.raises(ValueError, match="momentum_update: momentum"):
        momentum_update(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), momentum=1.5)
    with pytest.raises(ValueError, match="CoCoSoDaLoss: scale"):
        CoCoSoDaLoss(scale=-1.0)
