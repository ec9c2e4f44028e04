"""The "grounded_teacher" section of `posneg bench detection` on a tiny preset."""

from __future__ import annotations

import math

import torch

from posneg.bench import _detection_gt as section
from posneg.bench._det_sfda import PseudoBatch


def test_section_runs_and_reports_every_method() -> None:
    assert callable(section.SECTIONS["grounded_teacher"])
    out = section.demo_run(0)
    for name in (*section.METHODS, "expert"):
        for key in ("ap", "ap50"):
            value = out[f"{name}_{key}"]
            assert 0.0 <= value <= 1.0 and math.isfinite(value)
    assert out["gt_minus_mt_ap"] == out["gt_ap"] - out["mt_ap"]


def test_grounded_teacher_hooks_update_relation_and_keep_labels_valid() -> None:
    gt = section.GroundedTeacher(10)
    k = 3
    gt.relation = torch.tensor([[0.8, 0.1, 0.1], [0.4, 0.3, 0.3], [0.2, 0.5, 0.3]])
    gt.bank = section.CropBank(k)
    img = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    boxes = [torch.tensor([[4.0, 4.0, 24.0, 24.0]]), torch.tensor([[30.0, 30.0, 50.0, 50.0]])]
    labels = [torch.tensor([0]), torch.tensor([1])]
    batch = PseudoBatch(
        torch.tensor([0, 1]),
        img,
        img,
        boxes,
        labels,
        [torch.tensor([0.9]), torch.tensor([0.9])],
        [torch.nn.functional.one_hot(x, k).float() for x in labels],
    )
    gt.pseudo_labels(batch, 0)
    assert gt.bank.sizes().tolist() == [1, 1, 0]
    out = gt.mix(batch, 0, torch.Generator().manual_seed(1))
    for s, lab in zip(out.soft, out.labels, strict=True):
        torch.testing.assert_close(s.sum(1), torch.ones(len(lab)))
    # observe: two anchors labelled 0, the student predicts 1 and background
    assigned = torch.tensor([[0, 0, -1]])
    logits = torch.tensor([[[-5.0, 5.0, -5.0], [-5.0, -5.0, -5.0], [5.0, -5.0, -5.0]]])
    before = gt.relation.clone()
    gt.observe(assigned, logits, step=0)  # momentum 0.5 at step 0
    torch.testing.assert_close(
        gt.relation[0], 0.5 * before[0] + 0.5 * torch.tensor([0.0, 1.0, 0.0])
    )
    torch.testing.assert_close(gt.relation[1:], before[1:])
    w = gt.anchor_weights(assigned, torch.zeros(1, 3, k), logits, step=0)
    assert w is not None and w.shape == (1, 3) and float(w[0, 2]) == 1.0


def test_default_preset_leaves_the_expert_variants_to_full(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, ...]] = []
    monkeypatch.setattr(section, "run_gt", lambda ctx, g, cfg, methods: seen.append(methods))

    class Ctx:
        preset = "default"

    section.gt_section(Ctx(), torch.Generator())  # type: ignore[arg-type]
    Ctx.preset = "full"
    section.gt_section(Ctx(), torch.Generator())  # type: ignore[arg-type]
    assert seen == [section.DEFAULT_METHODS, section.METHODS]
    assert section.DEFAULT_METHODS == ("source", "adabn", "mt", "gt")
