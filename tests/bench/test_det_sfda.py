"""The source-free adaptation harness of `posneg bench detection` (posneg.bench._det_sfda)."""

from __future__ import annotations

import json

import torch

from posneg.bench import _det_sfda as sfda
from posneg.bench._det_model import TinyDetector

TINY = sfda.SFDAConfig(steps=2, batch_size=2)
ONE = sfda.SFDAConfig(steps=1, batch_size=2)


def _ctx(seed: int = 0) -> sfda.DetContext:
    return sfda.make_context(
        seed, preset="demo", train_scenes=6, test_scenes=2, target_scenes=4, steps=1, batch_size=2
    )


def test_strong_view_keeps_shape_range_and_generator() -> None:
    x = torch.rand(3, 3, 16, 16)
    state = torch.get_rng_state()
    a = sfda.strong_view(x, torch.Generator().manual_seed(1))
    b = sfda.strong_view(x, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and a.shape == x.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and not torch.equal(a, x)


def test_recalibrate_bn_uses_the_target_statistics() -> None:
    model = TinyDetector(3).eval()
    images = torch.rand(4, 3, 64, 64) * 0.2 + 0.7
    out = sfda.recalibrate_bn(model, images)
    bn = out.stages[0][1]
    first = out.stages[0][0](images)
    torch.testing.assert_close(bn.running_mean, first.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not out.training
    assert torch.equal(model.stages[0][1].running_mean, torch.zeros_like(bn.running_mean))


def test_assign_pseudo_labels_follow_the_method_hard_labels() -> None:
    model = TinyDetector(3)
    box = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    soft = torch.tensor([[0.3, 0.7, 0.0]])
    batch = sfda.PseudoBatch(
        torch.tensor([0]),
        torch.rand(1, 3, 64, 64),
        torch.rand(1, 3, 64, 64),
        [box],
        [torch.tensor([2])],
        [torch.tensor([0.9])],
        [soft],
    )
    labels, softs, tgts = sfda.assign_pseudo(model, batch, 3)
    pos = labels[0] >= 0
    assert bool(pos.any())
    assert (labels[0][pos] == 2).all()  # the hard label given, not argmax(soft)
    torch.testing.assert_close(softs[0][pos], soft.expand(int(pos.sum()), 3))
    assert (softs[0][~pos] == 0).all() and (tgts[0][pos] == box).all()


class _Counting(sfda.MeanTeacher):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pseudo_labels(self, batch: sfda.PseudoBatch, step: int) -> sfda.PseudoBatch:
        self.calls.append("pseudo")
        return batch

    def mix(
        self, batch: sfda.PseudoBatch, step: int, generator: torch.Generator
    ) -> sfda.PseudoBatch:
        self.calls.append("mix")
        return batch

    def anchor_weights(self, labels, soft, logits, step):  # type: ignore[no-untyped-def]
        self.calls.append("weights")
        return torch.zeros_like(labels, dtype=logits.dtype)  # no classification signal

    def observe(self, labels: torch.Tensor, logits: torch.Tensor, step: int) -> None:
        self.calls.append("observe")


def test_adapt_calls_the_hooks_and_is_deterministic() -> None:
    ctx = _ctx()
    source = sfda.source_detector(ctx, torch.Generator().manual_seed(0))
    assert sfda.source_detector(ctx, torch.Generator().manual_seed(5)) is source  # cached
    method = _Counting()
    a = sfda.adapt(ctx, method, config=TINY, generator=torch.Generator().manual_seed(3))
    assert method.calls == ["pseudo", "mix", "weights", "observe"] * 2
    b = sfda.adapt(ctx, sfda.MeanTeacher(), config=ONE, generator=torch.Generator().manual_seed(3))
    c = sfda.adapt(ctx, sfda.MeanTeacher(), config=ONE, generator=torch.Generator().manual_seed(3))
    for x, y in zip(b.state_dict().values(), c.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert not a.training
    ap = sfda.target_ap(ctx, b)
    assert 0.0 <= ap["ap"] <= 1.0


class _Extra(sfda.MeanTeacher):
    """Adds ``scale * mean(features)`` and trains one extra parameter with the student."""

    name = "extra"
    features = True

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.param = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, ...]] = []

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return [self.param]

    def extra_loss(self, out, batch, teacher, step):  # type: ignore[no-untyped-def]
        assert out.features is not None and not teacher.training
        self.seen.append(tuple(out.features.shape))
        if self.scale == 0:
            return None
        return self.scale * out.features.mean() + (self.param - 1.0) ** 2


def test_extra_loss_hook_sees_features_and_trains_extra_parameters() -> None:
    ctx = _ctx()
    source = sfda.source_detector(ctx, torch.Generator().manual_seed(0))
    plain = sfda.adapt(
        ctx, sfda.MeanTeacher(), config=TINY, generator=torch.Generator().manual_seed(3)
    )
    off = _Extra(0.0)
    same = sfda.adapt(ctx, off, config=TINY, generator=torch.Generator().manual_seed(3))
    for x, y in zip(plain.state_dict().values(), same.state_dict().values(), strict=True):
        assert torch.equal(x, y)  # no term: the plain mean teacher, bit for bit
    assert off.seen == [(2, len(source.anchors), source.cls.in_channels)] * 2
    on = _Extra(1.0)
    moved = sfda.adapt(ctx, on, config=TINY, generator=torch.Generator().manual_seed(3))
    assert float(on.param.detach()) > 0  # trained towards 1 by Adam
    assert any(
        not torch.equal(x, y)
        for x, y in zip(plain.state_dict().values(), moved.state_dict().values(), strict=True)
    )


def test_baselines_are_computed_once_per_context_and_key() -> None:
    ctx = _ctx(1)
    source = sfda.source_detector(ctx, torch.Generator().manual_seed(0))
    a = sfda.baselines(ctx, ONE, seed=7, source=source)
    assert sfda.baselines(ctx, ONE, seed=7, source=source) is a  # cached in ctx.extra
    assert set(a) >= {"source", "adabn", "mt"} and 0.0 <= a["mt"]["ap"] <= 1.0
    assert sfda.baselines(ctx, ONE, seed=8, source=source) is not a
    mt = sfda.adapt(ctx, sfda.MeanTeacher(), config=ONE, generator=torch.Generator().manual_seed(7))
    # NaN (no large box) is not equal to itself: compare the JSON text
    got = json.dumps(sfda.target_ap(ctx, mt), sort_keys=True)
    assert got == json.dumps(a["mt"], sort_keys=True)
    bare = sfda.DetContext(**{**ctx.__dict__, "extra": {}})  # no cache: computed every time
    assert sfda.baselines(bare, ONE, seed=7, source=source) is not a
