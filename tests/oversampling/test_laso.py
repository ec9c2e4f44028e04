"""LaSO: the training objective against a loop over the released script's terms, the trained
operations on linearly encoded label sets, determinism, state, errors.

No installed package implements LaSO; the reference is the released training script's list of
terms (leokarlin/LaSO, ``scripts_coco/train_setops_stripped.py``), written out term by term.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch.nn import functional as F

from posneg.oversampling.laso import OPS, LaSO

L, K = 5, 3  # labels, feature dimensions per label (D = 15)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks: one thread avoids oversubscription on a shared machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def encoded(n: int, *, seed: int, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Label sets encoded linearly: label l owns K dimensions, present with amplitude 0.75-1.25."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, L, generator=g) < 0.4
    amp = 0.75 + 0.5 * torch.rand(n, L, generator=g)
    x = (y.float() * amp).repeat_interleave(K, dim=1) + noise * torch.rand(n, L * K, generator=g)
    return x, y.float()


def _map(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Macro average precision over labels that are neither always nor never present."""
    t = target.numpy()
    keep = (t.sum(0) > 0) & (t.sum(0) < len(t))
    return float(average_precision_score(t[:, keep], scores.numpy()[:, keep], average="macro"))


@pytest.fixture(scope="module")
def trained() -> LaSO:
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        x, y = encoded(256, seed=0)
        g = torch.Generator().manual_seed(0)
        return LaSO(classifier_epochs=30, batch_size=64, lr=1e-2).fit(x, y, epochs=30, generator=g)


# ------------------------------------------------------------------------------------------
# formula: the objective, term by term
# ------------------------------------------------------------------------------------------


def naive_objective(
    laso: LaSO, a: torch.Tensor, b: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor
) -> torch.Tensor:
    """The released script's loss with every toggle on, one network call per term (eval mode)."""
    inter, uni, sub, clf = laso.intersection_, laso.union_, laso.subtraction_, laso.classifier_
    assert inter is not None and uni is not None and sub is not None and clf is not None
    A, B = ya.bool(), yb.bool()
    t = {"I": A & B, "U": A | B, "AB": A & ~B, "BA": B & ~A, "A": A, "B": B}
    t = {k: v.to(a.dtype) for k, v in t.items()}

    def bce(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.multilabel_soft_margin_loss(clf(z), target)  # the script's criterion1

    mse = F.mse_loss
    a_s_b, b_s_a = sub(a, b), sub(b, a)
    a_i_b, b_i_a = inter(a, b), inter(b, a)
    a_u_b, b_u_a = uni(a, b), uni(b, a)
    fake_a = uni(sub(a, b_i_a), a_i_b)
    fake_b = uni(sub(b, a_i_b), b_i_a)
    cls = bce(fake_a, t["A"]) + bce(fake_b, t["B"])
    cls = cls + bce(a_s_b, t["AB"]) + bce(b_s_a, t["BA"])
    cls = cls + bce(sub(a_s_b, b), t["AB"]) + bce(sub(b_s_a, a), t["BA"])
    cls = cls + bce(sub(a, a_i_b), t["AB"]) + bce(sub(b, a_i_b), t["BA"])
    cls = cls + bce(sub(b, b_i_a), t["BA"]) + bce(sub(a, b_i_a), t["AB"])
    cls = cls + bce(a_u_b, t["U"]) + bce(uni(a_u_b, b), t["U"]) + bce(uni(b_u_a, a), t["U"])
    cls = cls + bce(b_u_a, t["U"])
    cls = cls + bce(a_i_b, t["I"]) + bce(inter(a_i_b, b), t["I"]) + bce(inter(b_i_a, a), t["I"])
    cls = cls + bce(b_i_a, t["I"])
    rec = mse(a, fake_a) + mse(b, fake_b)
    rec = rec + mse(a_s_b, sub(a_s_b, b)) + mse(a_s_b, sub(a, a_i_b)) + mse(a_s_b, sub(a, b_i_a))
    rec = rec + mse(b_s_a, sub(b_s_a, a)) + mse(b_s_a, sub(b, a_i_b)) + mse(b_s_a, sub(b, b_i_a))
    rec = rec + mse(a_u_b, b_u_a) + mse(a_i_b, b_i_a)
    return cls + laso.recon_weight * rec


@pytest.mark.parametrize("recon_weight", [0.0, 1.0, 2.5])
def test_objective_matches_the_released_terms(recon_weight: float) -> None:
    """In eval mode (BatchNorm on running statistics) the batched objective equals the
    released script's 36 terms computed one network call at a time, in float64."""
    x, y = encoded(40, seed=3)
    laso = LaSO(classifier_epochs=1, batch_size=16, recon_weight=recon_weight)
    laso.fit(x.double(), y, epochs=1, generator=torch.Generator().manual_seed(1))
    for net in (laso.intersection_, laso.union_, laso.subtraction_):
        assert net is not None
        net.eval()
    a, b = x[:12].double(), x[12:24].double()
    ya, yb = y[:12].bool(), y[12:24].bool()
    got = laso._loss(a, b, ya, yb)
    expected = naive_objective(laso, a, b, ya, yb)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_residual_prior_of_each_operation() -> None:
    """With the learned parts zeroed, each network returns its arithmetic prior (released code):
    min(a, b), a + b and relu(a - b), through the output layer set to the identity."""
    x, y = encoded(16, seed=4)
    laso = LaSO(classifier_epochs=1, output_relu=False)
    laso.fit(x.double(), y, epochs=1, generator=torch.Generator().manual_seed(0))
    a, b = x[:6].double(), x[6:12].double()
    priors = {
        "intersection": torch.minimum(a, b),
        "union": a + b,
        "subtraction": torch.relu(a - b),
    }
    for op in OPS:
        net = getattr(laso, f"{op}_")
        with torch.no_grad():
            for block in net.blocks:  # BN(fc(h)) == 0: weights and BN shift zero
                block.fc.weight.zero_()
                block.fc.bias.zero_()
                block.bn.bias.zero_()
                block.bn.running_mean.zero_()
            net.out.weight.copy_(torch.eye(net.dim, dtype=torch.float64))
            net.out.bias.zero_()
        expected = F.leaky_relu(priors[op], 0.2)
        torch.testing.assert_close(laso.synthesise(a, b, op), expected)


# ------------------------------------------------------------------------------------------
# properties: trained operations on linearly encoded label sets
# ------------------------------------------------------------------------------------------


def test_trained_operations_produce_the_target_label_sets(trained: LaSO) -> None:
    xt, yt = encoded(200, seed=1)
    a, b = xt[:100], xt[100:]
    ya, yb = yt[:100].bool(), yt[100:].bool()
    targets = {"intersection": ya & yb, "union": ya | yb, "subtraction": ya & ~yb}
    for op, tgt in targets.items():
        probs = trained.predict_proba(trained.synthesise(a, b, op))
        got_map = _map(probs, tgt.float())
        acc = float(((probs > 0.5) == tgt).float().mean())
        base = _map(trained.predict_proba(a), tgt.float())  # a's own features as the answer
        assert got_map > 0.9, (op, got_map)
        assert acc > 0.9, (op, acc)
        assert got_map > base + 0.05, (op, got_map, base)
    # the card's check: the classifier on M_uni(a, a) gives L(a)
    probs = trained.predict_proba(trained.synthesise(a, a, "union"))
    assert float(((probs > 0.5) == ya).float().mean()) > 0.9
    # intersection has lower activation on labels missing from either input
    p_int = trained.predict_proba(trained.synthesise(a, b, "intersection"))
    assert float(p_int[~targets["intersection"]].mean()) < float(
        p_int[targets["intersection"]].mean()
    )


def test_augment_labels_follow_the_operations(trained: LaSO) -> None:
    xs, ys = encoded(10, seed=5)
    g = torch.Generator().manual_seed(2)
    new_x, new_y = trained.augment(xs, ys, 90, generator=g)
    assert new_x.shape == (90, L * K) and new_y.shape == (90, L) and new_y.dtype == ys.dtype
    probs = trained.predict_proba(new_x)
    assert float(((probs > 0.5) == new_y.bool()).float().mean()) > 0.85
    # numpy in, numpy out, same draws for the same seed
    nx, ny = trained.augment(xs.numpy(), ys.numpy(), 90, generator=torch.Generator().manual_seed(2))
    assert isinstance(nx, np.ndarray) and isinstance(ny, np.ndarray)
    np.testing.assert_allclose(nx, new_x.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ny, new_y.numpy())


def test_fit_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    x, y = encoded(48, seed=6)
    before = torch.get_rng_state()
    outs = []
    for _ in range(2):
        laso = LaSO(classifier_epochs=2, batch_size=16)
        laso.fit(x, y, epochs=2, generator=torch.Generator().manual_seed(7))
        outs.append(laso.synthesise(x[:8], x[8:16], "subtraction"))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(outs[0], outs[1])
    other = LaSO(classifier_epochs=2, batch_size=16)
    other.fit(x, y, epochs=2, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(outs[0], other.synthesise(x[:8], x[8:16], "subtraction"))


def test_shared_pairs_share_a_label() -> None:
    _, y = encoded(64, seed=9)
    laso = LaSO(pairs="shared")
    g = torch.Generator().manual_seed(0)
    ia = torch.randperm(64, generator=g)
    ib = laso._partners(y.bool(), ia, g)
    yb = y.bool()
    has = yb[ia].any(dim=1)
    assert bool((yb[ia] & yb[ib]).any(dim=1)[has].all())


def test_state_dict_round_trip_and_half_inputs(trained: LaSO) -> None:
    state = trained.state_dict()
    copy = LaSO().load_state_dict(state)
    x, _ = encoded(6, seed=10)
    for op in OPS:
        torch.testing.assert_close(
            copy.synthesise(x, x.flip(0), op), trained.synthesise(x, x.flip(0), op)
        )
    out = trained.synthesise(x.half(), x.flip(0).half(), "union")
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


def test_output_relu_follows_the_features() -> None:
    x, y = encoded(20, seed=11)
    pos = LaSO(classifier_epochs=1).fit(x, y, epochs=1, generator=torch.Generator().manual_seed(0))
    neg = LaSO(classifier_epochs=1).fit(
        x - 0.5, y, epochs=1, generator=torch.Generator().manual_seed(0)
    )
    assert pos.union_ is not None and pos.union_.output_relu
    assert neg.union_ is not None and not neg.union_.output_relu
    assert "n_layers=1" in repr(pos) and "fitted D=15" in repr(pos)


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_layers": 0}, ValueError, "LaSO: n_layers must be >= 1"),
        ({"lr": 0.0}, ValueError, "LaSO: lr must be > 0"),
        ({"batch_size": 1}, ValueError, "LaSO: batch_size must be >= 2"),
        ({"recon_weight": -1.0}, ValueError, "LaSO: recon_weight must be >= 0"),
        ({"pairs": "all"}, ValueError, "LaSO: pairs must be one of 'shared', 'random'"),
        ({"output_relu": 1}, TypeError, "LaSO: output_relu must be a bool or None"),
        ({"dropout": 1.0}, ValueError, r"LaSO: dropout must be in \[0.0, 1.0\)"),
        ({"classifier_epochs": 2.5}, TypeError, "LaSO: classifier_epochs must be an int"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        LaSO(**kwargs)


def test_bad_fit_inputs() -> None:
    x, y = encoded(10, seed=12)
    laso = LaSO(classifier_epochs=1)
    with pytest.raises(TypeError, match=r"LaSO\.fit: features must be a torch.Tensor or numpy"):
        laso.fit([[1.0]], y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"LaSO\.fit: features must be a floating-point tensor"):
        laso.fit(torch.ones(10, 3, dtype=torch.long), y)
    with pytest.raises(ValueError, match=r"LaSO\.fit: features must have at least 2 rows"):
        laso.fit(x[:1], y[:1])
    with pytest.raises(ValueError, match=r"LaSO\.fit: features contains NaN or inf"):
        laso.fit(torch.full((10, 15), float("nan")), y)
    with pytest.raises(ValueError, match=r"LaSO\.fit: labels must be multi-hot of shape \(10, L\)"):
        laso.fit(x, y[:5])
    with pytest.raises(
        ValueError, match=r"LaSO\.fit: labels must be multi-hot \(every entry 0 or 1\)"
    ):
        laso.fit(x, y * 2)
    with pytest.raises(ValueError, match=r"LaSO\.fit: epochs must be >= 1"):
        laso.fit(x, y, epochs=0)
    with pytest.raises(TypeError, match=r"LaSO\.fit: generator must be a torch.Generator"):
        laso.fit(x, y, generator=0)  # type: ignore[arg-type]


def test_bad_use() -> None:
    x, y = encoded(12, seed=13)
    with pytest.raises(ValueError, match="LaSO: not fitted yet"):
        LaSO().synthesise(x, x, "union")
    laso = LaSO(classifier_epochs=1).fit(x, y, epochs=1, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"LaSO\.synthesise: op must be one of"):
        laso.synthesise(x, x, "xor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"LaSO\.synthesise: a must have D=15 features"):
        laso.synthesise(x[:, :4], x[:, :4], "union")
    with pytest.raises(
        ValueError, match=r"LaSO\.synthesise: b must have shape \(M, D\) matching a"
    ):
        laso.synthesise(x, x[:3], "union")
    with pytest.raises(TypeError, match=r"LaSO\.synthesise: a has dtype torch.float64"):
        laso.synthesise(x.double(), x.double(), "union")
    with pytest.raises(ValueError, match=r"LaSO\.augment: n must be >= 1"):
        laso.augment(x, y, 0)
    with pytest.raises(ValueError, match=r"LaSO\.augment: labels must have L=5 columns"):
        laso.augment(x, y[:, :3], 4)
    with pytest.raises(ValueError, match=r"LaSO\.augment: ops must be a non-empty sequence"):
        laso.augment(x, y, 4, ops=())
    with pytest.raises(ValueError, match=r"LaSO\.augment: features needs at least 2 rows"):
        laso.augment(x[:1], y[:1], 4)
    with pytest.raises(ValueError, match=r"LaSO\.load_state_dict: state is missing"):
        LaSO().load_state_dict({"n_features": 3})
