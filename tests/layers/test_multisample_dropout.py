"""Multi-sample dropout (Inoue, arXiv 1905.09788): the card's tests 1-6, formula, errors.

No official code exists (PAPERS.md card): the reference is the paper's algorithm, written here as
naive float64 loops over the samples.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posneg.layers.multisample_dropout import (
    CITATION,
    MultiSampleDropout,
    multi_sample_dropout,
    multi_sample_loss,
    sample_dropout_masks,
)


def _head(d: int = 6, c: int = 3, dtype: torch.dtype = torch.float64) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    lin = nn.Linear(d, c).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(c, d, generator=g, dtype=dtype))
        lin.bias.copy_(torch.randn(c, generator=g, dtype=dtype))
    return nn.Sequential(lin, nn.Tanh(), nn.Linear(c, c).to(dtype))


def _data(b: int = 5, d: int = 6, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    h = torch.randn(b, d, generator=g, dtype=torch.float64)
    return h, torch.randint(c, (b,), generator=g)


def test_formula_against_naive_loop() -> None:
    h, y = _data()
    head, p = _head(), 0.3
    masks = sample_dropout_masks(h, num_samples=4, p=p, generator=torch.Generator().manual_seed(0))
    got = multi_sample_loss(multi_sample_dropout(h, masks, head=head, p=p), y)
    total = 0.0
    with torch.no_grad():
        for k in range(4):
            for i in range(h.shape[0]):
                z = head((masks[k, i].double() * h[i] / (1 - p)).unsqueeze(0))[0]
                total += float(torch.logsumexp(z, 0) - z[y[i]])
    torch.testing.assert_close(got, torch.tensor(total / (4 * h.shape[0]), dtype=torch.float64))


def test_m1_equals_single_dropout_under_same_masks() -> None:
    # Card test 1: M = 1 is standard (inverted) dropout followed by the head and CE.
    h, y = _data()
    head, p = _head(), 0.5
    masks = sample_dropout_masks(h, num_samples=1, p=p, generator=torch.Generator().manual_seed(3))
    single = F.cross_entropy(head(h * masks[0] / (1 - p)), y)
    torch.testing.assert_close(
        multi_sample_loss(multi_sample_dropout(h, masks, head=head, p=p), y), single
    )


def test_masks_match_dropout_rate_and_are_independent() -> None:
    h = torch.zeros(200, 50)
    masks = sample_dropout_masks(
        h, num_samples=4, p=0.3, generator=torch.Generator().manual_seed(0)
    )
    assert abs(masks.float().mean().item() - 0.7) < 0.01
    # independent across samples: agreement rate of two masks = 0.7^2 + 0.3^2
    agree = (masks[0] == masks[1]).float().mean().item()
    assert abs(agree - 0.58) < 0.02
    assert not torch.equal(masks[0], masks[1])


def test_p0_gives_plain_ce_and_identical_samples() -> None:
    # Card test 2.
    h, y = _data()
    head = _head()
    msd = MultiSampleDropout(head, num_samples=8, p=0.0).train()
    z = msd(h, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, z[:1].expand_as(z))
    torch.testing.assert_close(msd.loss(z, y), F.cross_entropy(head(h), y))


def test_monte_carlo_same_expectation_lower_variance() -> None:
    # Card test 3: E[L_M] = E[L_1] (each term is a single-dropout loss), Var[L_M] < Var[L_1].
    h, y = _data(b=3)
    head, p = _head(), 0.5
    g = torch.Generator().manual_seed(7)
    reps = 1500
    with torch.no_grad():
        l1 = torch.stack(
            [
                multi_sample_loss(
                    multi_sample_dropout(
                        h, sample_dropout_masks(h, num_samples=1, p=p, generator=g), head=head, p=p
                    ),
                    y,
                )
                for _ in range(reps)
            ]
        )
        l8 = torch.stack(
            [
                multi_sample_loss(
                    multi_sample_dropout(
                        h, sample_dropout_masks(h, num_samples=8, p=p, generator=g), head=head, p=p
                    ),
                    y,
                )
                for _ in range(reps)
            ]
        )
    se = (l1.var() / reps + l8.var() / reps).sqrt()
    assert abs(float(l1.mean() - l8.mean())) < 4 * float(se)
    assert float(l8.var()) < 0.3 * float(l1.var())  # about 1/8 in theory


def test_trunk_runs_once() -> None:
    # Card test 4: forward and backward of the trunk run once per step, whatever M is.
    calls = {"fwd": 0, "bwd": 0}
    trunk = nn.Linear(4, 6).double()
    trunk.register_forward_hook(lambda *a: calls.__setitem__("fwd", calls["fwd"] + 1))
    trunk.weight.register_hook(lambda gr: calls.__setitem__("bwd", calls["bwd"] + 1))
    msd = MultiSampleDropout(_head(), num_samples=8).train()
    x = torch.randn(5, 4, dtype=torch.float64)
    msd.loss(
        msd(trunk(x), generator=torch.Generator().manual_seed(0)), torch.zeros(5, dtype=torch.long)
    ).backward()
    assert calls == {"fwd": 1, "bwd": 1}


def test_gradient_is_mean_of_per_sample_gradients() -> None:
    # Card test 5: dL/dh = (1/M) sum_k dCE(z_k)/dh.
    h, y = _data()
    head, p, m = _head(), 0.4, 5
    masks = sample_dropout_masks(h, num_samples=m, p=p, generator=torch.Generator().manual_seed(4))
    hh = h.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        multi_sample_loss(multi_sample_dropout(hh, masks, head=head, p=p), y), hh
    )
    per = []
    for k in range(m):
        hk = h.clone().requires_grad_(True)
        (gk,) = torch.autograd.grad(F.cross_entropy(head(hk * masks[k] / (1 - p)), y), hk)
        per.append(gk)
    torch.testing.assert_close(grad, torch.stack(per).mean(0))


def test_eval_is_single_pass_without_dropout() -> None:
    # Card test 6.
    h, _ = _data()
    head = _head()
    msd = MultiSampleDropout(head, num_samples=8, p=0.5).eval()
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    torch.testing.assert_close(msd(h, generator=g), head(h))
    assert torch.equal(g.get_state(), state)  # nothing drawn


def test_loss_vs_logit_averaging_differ_by_jensen() -> None:
    h, y = _data()
    head, p = _head(), 0.5
    masks = sample_dropout_masks(h, num_samples=8, p=p, generator=torch.Generator().manual_seed(5))
    z = multi_sample_dropout(h, masks, head=head, p=p)
    by_loss = multi_sample_loss(z, y, average="loss")
    by_logits = multi_sample_loss(z, y, average="logits")
    assert float(by_logits.detach()) < float(by_loss.detach())  # CE is convex in the logits
    torch.testing.assert_close(by_logits, F.cross_entropy(z.mean(0), y))


def test_generator_reproducible_and_global_rng_untouched() -> None:
    h, _ = _data()
    msd = MultiSampleDropout(_head(), num_samples=3).train()
    state = torch.get_rng_state()
    a = msd(h, generator=torch.Generator().manual_seed(9))
    b = msd(h, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)


def test_repr_and_citation() -> None:
    r = repr(MultiSampleDropout(nn.Linear(2, 2), num_samples=2, p=0.25, average="logits"))
    assert "num_samples=2, p=0.25, average='logits'" in r
    assert "1905.09788" in CITATION


def test_errors() -> None:
    h, y = _data()
    with pytest.raises(ValueError, match="MultiSampleDropout: p must be in"):
        MultiSampleDropout(nn.Linear(6, 3), p=1.0)
    with pytest.raises(ValueError, match="MultiSampleDropout: num_samples must be >= 1"):
        MultiSampleDropout(nn.Linear(6, 3), num_samples=0)
    with pytest.raises(ValueError, match="MultiSampleDropout: average must be one of"):
        MultiSampleDropout(nn.Linear(6, 3), average="mean")
    with pytest.raises(TypeError, match=r"MultiSampleDropout: head must be an nn\.Module"):
        MultiSampleDropout(lambda t: t)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="multi_sample_dropout: masks must be a bool tensor"):
        multi_sample_dropout(h, torch.ones(2, 5, 6), head=nn.Linear(6, 3).double())
    with pytest.raises(
        ValueError, match=r"multi_sample_dropout: masks must have shape \(M, 5, 6\)"
    ):
        multi_sample_dropout(
            h, torch.ones(2, 5, 5, dtype=torch.bool), head=nn.Linear(6, 3).double()
        )
    with pytest.raises(ValueError, match="multi_sample_loss: logits must have shape"):
        multi_sample_loss(torch.zeros(5), y)
    with pytest.raises(ValueError, match=r"multi_sample_loss: target must have shape \(4,\)"):
        multi_sample_loss(torch.zeros(2, 4, 3), y)
    with pytest.raises(TypeError, match="sample_dropout_masks: generator must be"):
        sample_dropout_masks(h, num_samples=2, generator=0)  # type: ignore[arg-type]
