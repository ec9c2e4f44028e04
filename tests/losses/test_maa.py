"""CoT's MAA loss (ICCV 2023): the official mix_loss transcribed, formula, properties, errors."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from posneg.losses.maa import MAALoss, maa_loss, mix_attribute_embeddings


def official_mix_loss(
    vis_comp: torch.Tensor,
    concept_gt: torch.Tensor,
    concept: torch.Tensor,
    lam: float,
) -> torch.Tensor:
    """Transcription of HanjaeKim98/CoT ``models/cot.py::COT.train_forward_augment`` (commit
    258476ab926ee0b24e27101182727f99363f06aa), the ``mix_loss`` lines, float64.

    ``vis_comp`` is the doubled batch's (2B, D) composed features ``[anchors; partners]``.
    """
    vis_comp_a, vis_comp_b = vis_comp.chunk(2, dim=0)
    vis_mix = lam * vis_comp_a + (1 - lam) * vis_comp_b
    vis_mix = F.normalize(vis_mix, dim=-1)
    concept_gt = F.normalize(concept_gt, dim=-1)
    concept_all = F.normalize(concept, dim=-1)
    cpositive = torch.sum(vis_mix * concept_gt, dim=1, keepdim=True)
    cnegative = vis_mix @ concept_all.T
    clogits = torch.cat([cpositive, cnegative], dim=1)
    clabels = torch.zeros(len(clogits), dtype=torch.long)
    return F.cross_entropy(clogits / 0.1, clabels)


def _inputs(seed: int, b: int = 5, d: int = 6, p: int = 7) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=g, dtype=torch.float64) for n in (b, b, b, p))


@pytest.mark.parametrize("lam", [0.0, 0.37, 1.0])
def test_equals_official_mix_loss(lam: float) -> None:
    v, v2, c_hat, concepts = _inputs(0)
    expected = official_mix_loss(torch.cat([v, v2]), c_hat, concepts, lam)
    torch.testing.assert_close(maa_loss(v, v2, c_hat, concepts, lam=lam), expected)


def test_virtual_concept_input_equals_official_new_attr() -> None:
    g = torch.Generator().manual_seed(1)
    attr_weight = torch.randn(9, 4, generator=g, dtype=torch.float64)
    a, a2 = torch.tensor([0, 3, 5]), torch.tensor([2, 2, 8])
    lam = 0.6
    new_attr = attr_weight[a] * lam + attr_weight[a2] * (1 - lam)  # the official line
    torch.testing.assert_close(mix_attribute_embeddings(attr_weight, a, a2, lam), new_attr)
    # card test 3: lam = 1 gives the anchor's own attribute (so c_hat = c(a, o))
    torch.testing.assert_close(mix_attribute_embeddings(attr_weight, a, a2, 1.0), attr_weight[a])


def test_formula_loop_and_reductions() -> None:
    v, v2, c_hat, concepts = _inputs(2)
    lam = torch.tensor([0.1, 0.5, 0.9, 0.0, 1.0], dtype=torch.float64)  # per-sample lam
    each = maa_loss(v, v2, c_hat, concepts, lam=lam, temperature=0.2, reduction="none")
    for i in range(5):
        mix = float(lam[i]) * v[i] + (1 - float(lam[i])) * v2[i]
        mix = mix / mix.norm()
        scores = [float(mix @ (c_hat[i] / c_hat[i].norm())) / 0.2]
        scores += [float(mix @ (c / c.norm())) / 0.2 for c in concepts]
        expected = -scores[0] + math.log(sum(math.exp(s) for s in scores))
        assert math.isclose(float(each[i]), expected, rel_tol=1e-12)
    torch.testing.assert_close(
        maa_loss(v, v2, c_hat, concepts, lam=lam, temperature=0.2), each.mean()
    )
    torch.testing.assert_close(
        maa_loss(v, v2, c_hat, concepts, lam=lam, temperature=0.2, reduction="sum"), each.sum()
    )


def test_lam_one_ignores_the_partner() -> None:
    v, v2, c_hat, concepts = _inputs(3)
    a = maa_loss(v, v2, c_hat, concepts, lam=1.0)
    b = maa_loss(v, torch.randn_like(v2), c_hat, concepts, lam=1.0)
    torch.testing.assert_close(a, b)


def test_aligned_virtual_concept_gives_a_low_loss() -> None:
    v, v2, _, concepts = _inputs(4)
    lam = 0.3
    aligned = lam * v + (1 - lam) * v2
    assert float(maa_loss(v, v2, aligned, concepts, lam=lam)) < float(
        maa_loss(v, v2, -aligned, concepts, lam=lam)
    )


def test_gradcheck_and_half_inputs() -> None:
    v, v2, c_hat, concepts = (x.requires_grad_(True) for x in _inputs(5, b=3, d=3, p=4))
    assert torch.autograd.gradcheck(
        lambda *xs: maa_loss(*xs, lam=0.4, temperature=0.5), (v, v2, c_hat, concepts)
    )
    half = [x.detach().half() for x in _inputs(5)]
    out = maa_loss(*half, lam=0.5)
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_module_matches_function_and_pickles() -> None:
    v, v2, c_hat, concepts = _inputs(6)
    module = MAALoss(temperature=0.2, reduction="sum")
    assert "temperature=0.2" in repr(module) and "reduction='sum'" in repr(module)
    expected = maa_loss(v, v2, c_hat, concepts, lam=0.3, temperature=0.2, reduction="sum")
    torch.testing.assert_close(module(v, v2, c_hat, concepts, 0.3), expected)
    torch.testing.assert_close(
        pickle.loads(pickle.dumps(module))(v, v2, c_hat, concepts, 0.3), expected
    )


def test_errors() -> None:
    v, v2, c_hat, concepts = (x.float() for x in _inputs(7))
    with pytest.raises(ValueError, match=r"maa_loss: lam must be in \[0, 1\]"):
        maa_loss(v, v2, c_hat, concepts, lam=1.5)
    with pytest.raises(
        ValueError, match=r"maa_loss: lam must be a float, a 0-d tensor or a \(5,\)"
    ):
        maa_loss(v, v2, c_hat, concepts, lam=torch.rand(4))
    with pytest.raises(TypeError, match="maa_loss: lam must be a real number"):
        maa_loss(v, v2, c_hat, concepts, lam="0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maa_loss: partner_features must have shape"):
        maa_loss(v, v2[:3], c_hat, concepts, lam=0.5)
    with pytest.raises(ValueError, match="maa_loss: virtual_concept must have shape"):
        maa_loss(v, v2, c_hat[:, :3], concepts, lam=0.5)
    with pytest.raises(ValueError, match="maa_loss: concepts"):
        maa_loss(v, v2, c_hat, concepts[:, :3], lam=0.5)
    with pytest.raises(TypeError, match="maa_loss: concepts"):
        maa_loss(v, v2, c_hat, concepts.double(), lam=0.5)
    with pytest.raises(TypeError, match="maa_loss: features must be a floating"):
        maa_loss(v.long(), v2, c_hat, concepts, lam=0.5)
    with pytest.raises(ValueError, match="maa_loss: temperature must be > 0"):
        maa_loss(v, v2, c_hat, concepts, lam=0.5, temperature=0.0)
    with pytest.raises(ValueError, match="maa_loss: reduction must be one of"):
        maa_loss(v, v2, c_hat, concepts, lam=0.5, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MAALoss: temperature must be > 0"):
        MAALoss(temperature=-1.0)
    w = torch.randn(4, 3)
    with pytest.raises(TypeError, match="mix_attribute_embeddings: attr must be a"):
        mix_attribute_embeddings(w, torch.tensor([0.0]), torch.tensor([1]), 0.5)
    with pytest.raises(ValueError, match="mix_attribute_embeddings: partner_attr must have shape"):
        mix_attribute_embeddings(w, torch.tensor([0, 1]), torch.tensor([1]), 0.5)
