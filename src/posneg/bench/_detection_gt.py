"""`posneg bench detection` section "grounded_teacher": target AP after source-free adaptation.

Ashraf et al., *Context Aware Grounded Teacher for Source Free Object Detection*, arXiv
2504.15404 (2025), on the bench's pasted-digit scenes: the detector trained on the source domain
(china.jpg backgrounds) is adapted without labels to the target domain (flower.jpg backgrounds,
blurred, half contrast) with the harness of :mod:`posneg.bench._det_sfda` (AdaBN, then a mean
teacher: EMA teacher on the weak view, student on the strong view, pseudo-labels above 0.3).
Target-domain AP (COCO-style, held-out target scenes) per seed for:

- ``source``: the source detector as is; ``adabn``: with target BatchNorm statistics (the start
  of every adaptation below);
- ``mt``: the plain mean teacher;
- ``gt``: Grounded Teacher's relational context on top of it
  (:mod:`posneg.detection.grounded_teacher`): the class relation (EMA of the student's
  row-normalised
  (pseudo-label, prediction) counts over positive anchors, momentum ramped 0.5 -> 0.99 over the
  first half of the run), relation-guided crop mixing of the strong view from a bank of the
  teacher's pseudo-label crops (both majority and minority bases, as on the released labelled
  stream), and the relation-weighted classification loss (its per-ROI weights applied per
  anchor to the focal loss: a prediction is the arg max class when its sigmoid is >= 0.5,
  background otherwise);
- ``gt_expert``: ``gt`` plus expert guidance as the paper describes (a second student pass on the
  expert's boxes with score > 0.8); ``gt_expert_released``: the same with the released code's
  overwrite (:func:`posneg.detection.grounded_teacher.expert_guidance` ``overwrite=True``: the
  expert's labels replace the teacher's by position and both passes use them).

The expert is a stand-in for the paper's BiomedParse (a foundation model, not available here):
the source detector fine-tuned (a quarter of the bench's steps, lr 1e-3) on the *source* scenes
seen with a random box blur and contrast change (conditions a broadly trained model has seen).
It never sees a target scene or label. Claims checked: Grounded Teacher improves target AP over the
mean teacher (paper: state of the art on medical SFOD; Cityscapes -> Foggy 50.8 mAP).

Presets: the bench's default runs :data:`DEFAULT_METHODS` (source, AdaBN, mean teacher and
Grounded Teacher: what the claim needs; the first three are shared with the other source-free
sections through :func:`posneg.bench._det_sfda.baselines`); the three expert variants (the
expert alone, intended two passes, released overwrite) run only with ``posneg bench detection
--full`` (``ctx.preset == "full"``), as they cost three more adaptations and a fine-tune per seed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from posneg.bench._det_context import DetContext, DetScenes
from posneg.bench._det_model import TinyDetector, train_detector
from posneg.bench._det_sfda import (
    PRESETS,
    MeanTeacher,
    PseudoBatch,
    SFDAConfig,
    adapt,
    baselines,
    make_context,
    recalibrate_bn,
    source_detector,
    target_ap,
)
from posneg.detection.grounded_teacher import (
    CropBank,
    apply_relation_mix,
    expert_guidance,
    relation_loss_weights,
    relation_momentum,
    relation_weight_matrix,
    sample_relation_mix,
    update_relation,
)
from posneg.detection.metrics import Detections

__all__ = ["DEFAULT_METHODS", "METHODS", "SECTIONS", "GroundedTeacher", "gt_section", "run_gt"]

METHODS = ("source", "adabn", "mt", "gt", "gt_expert", "gt_expert_released")
#: What the bench's default preset runs (the claim: Grounded Teacher against the mean teacher).
DEFAULT_METHODS = METHODS[:4]
EXPERT_THRESHOLD = 0.8


class GroundedTeacher(MeanTeacher):
    """Grounded Teacher's hooks on the mean-teacher harness (see the module docstring)."""

    name = "grounded_teacher"

    def __init__(
        self, steps: int, *, expert: TinyDetector | None = None, overwrite: bool = False
    ) -> None:
        self.steps, self.expert, self.overwrite = steps, expert, overwrite
        self.relation = torch.zeros(0, 0)
        self.bank = CropBank(1)
        self._expert_batch: PseudoBatch | None = None

    def start(self, ctx: DetContext, source: TinyDetector, generator: torch.Generator) -> None:
        k = ctx.num_classes
        self.relation, self.bank = torch.zeros(k, k), CropBank(k, max_save=50)

    def pseudo_labels(self, batch: PseudoBatch, step: int) -> PseudoBatch:
        for img, b, lab in zip(batch.weak, batch.boxes, batch.labels, strict=True):
            self.bank.add(img, b, lab)  # save_crops_target on the weak view
        self._expert_batch = None
        if self.expert is None:
            return batch
        k = self.relation.shape[0]
        teacher = [
            Detections(b, s, lab)
            for b, s, lab in zip(batch.boxes, batch.scores, batch.labels, strict=True)
        ]
        expert: list[Detections | None] = []
        for d in self.expert_detections(batch.weak):
            keep = d.scores > EXPERT_THRESHOLD
            expert.append(Detections(*(v[keep] for v in d)) if bool(keep.any()) else None)
        # both sets are already thresholded (teacher 0.3 by the harness, expert 0.8 above)
        t, e = expert_guidance(teacher, expert, threshold=0.0, overwrite=self.overwrite)

        def as_batch(dets: list[Detections]) -> PseudoBatch:
            return PseudoBatch(
                batch.index,
                batch.images,
                batch.weak,
                [d.boxes for d in dets],
                [d.labels for d in dets],
                [d.scores for d in dets],
                [F.one_hot(d.labels, k).float() for d in dets],
            )

        self._expert_batch = as_batch(e)
        return as_batch(t)

    def expert_detections(self, images: torch.Tensor) -> list[Detections]:
        from posneg.bench._det_model import predict

        if self.expert is None:
            return []
        return predict(self.expert, images, score_thresh=0.05)

    def mix(self, batch: PseudoBatch, step: int, generator: torch.Generator) -> PseudoBatch:
        k = self.relation.shape[0]
        images, labels, soft = batch.images.clone(), [], []
        for i, (b, lab) in enumerate(zip(batch.boxes, batch.labels, strict=True)):
            params = sample_relation_mix(self.relation, b, lab, self.bank, generator=generator)
            images[i], hard, s = apply_relation_mix(images[i], b, lab, params, self.bank)
            labels.append(hard)
            soft.append(s[:, :k])
        return PseudoBatch(batch.index, images, batch.weak, batch.boxes, labels, batch.scores, soft)

    def extra_passes(self, batch: PseudoBatch, step: int) -> list[PseudoBatch]:
        if self._expert_batch is None:
            return []
        if self.overwrite:
            # released: the same (already mixed) list is mixed again and sent through again
            return [
                PseudoBatch(
                    batch.index,
                    batch.images,
                    batch.weak,
                    batch.boxes,
                    batch.labels,
                    batch.scores,
                    batch.soft,
                )
            ]
        g = torch.Generator().manual_seed(step)
        return [self.mix(self._expert_batch, step, g)]

    def anchor_weights(
        self, labels: torch.Tensor, soft: torch.Tensor, logits: torch.Tensor, step: int
    ) -> torch.Tensor | None:
        k = self.relation.shape[0]
        gt = torch.where(labels >= 0, labels, torch.full_like(labels, k)).flatten()
        prob = logits.sigmoid()
        best = prob.max(-1)
        pred = torch.where(best.values >= 0.5, best.indices, torch.full_like(best.indices, k))
        pred = pred.flatten()
        mixed = ((soft.max(-1).values < 1) & (labels >= 0)).flatten()
        cw = relation_weight_matrix(self.relation)
        w = relation_loss_weights(cw, gt.cpu(), pred.cpu(), mixed=mixed.cpu())
        return w.view(labels.shape).to(logits)

    def observe(self, labels: torch.Tensor, logits: torch.Tensor, step: int) -> None:
        k = self.relation.shape[0]
        pos = labels >= 0
        if not bool(pos.any()):
            return
        best = logits[pos].sigmoid().max(-1)
        pred = torch.where(best.values >= 0.5, best.indices, torch.full_like(best.indices, k))
        a = relation_momentum(step, burn_up=max(self.steps, 1))
        self.relation = update_relation(self.relation, labels[pos].cpu(), pred.cpu(), momentum=a)


def _blur_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 3x3 box blur (0-2 passes) and contrast in [0.4, 1.2], per scene."""
    b = images.shape[0]
    k = torch.full((3, 1, 3, 3), 1.0 / 9.0)
    passes = torch.randint(0, 3, (b,), generator=generator)
    out = images.clone()
    for p in (1, 2):
        sel = passes >= p
        if bool(sel.any()):
            x = F.pad(out[sel], (1, 1, 1, 1), mode="replicate")
            out[sel] = F.conv2d(x, k, groups=3)
    c = (torch.rand(b, generator=generator) * 0.8 + 0.4).view(b, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + c * (out - mean)).clamp(0, 1)


def _expert(
    ctx: DetContext, source: TinyDetector, steps: int, generator: torch.Generator
) -> TinyDetector:
    """The expert stand-in: the source detector fine-tuned on :func:`_blur_view` source scenes."""
    scenes = ctx.source_train
    view = _blur_view(scenes.images, generator)
    aug = DetScenes(view, scenes.boxes, scenes.labels, scenes.domain)
    model = copy.deepcopy(source)
    return train_detector(model, aug, steps=steps, lr=1e-3, generator=generator).eval()


def gt_section(ctx: DetContext, generator: torch.Generator) -> dict[str, Any]:
    """Target AP (and AP50) for one seed: :data:`METHODS` with the ``full`` preset, else
    :data:`DEFAULT_METHODS`."""
    cfg = PRESETS.get(ctx.preset, PRESETS["default"])
    return run_gt(ctx, generator, cfg, methods=METHODS if ctx.preset == "full" else DEFAULT_METHODS)


def run_gt(
    ctx: DetContext,
    generator: torch.Generator,
    cfg: SFDAConfig,
    *,
    methods: tuple[str, ...] = METHODS,
    expert_steps: int | None = None,
) -> dict[str, Any]:
    """Run ``methods`` on ``ctx`` with the harness config ``cfg``; metrics keyed by method."""
    # the seed first: the same for every section given the same generator, whether or not
    # source_detector trains (draws) here (it does not in the bench: ctx.source_detector)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    source = source_detector(ctx, generator)
    out: dict[str, Any] = {}

    started = time.process_time()

    def record(name: str, model: TinyDetector) -> None:
        nonlocal started
        m = target_ap(ctx, model)
        out[f"{name}_ap"], out[f"{name}_ap50"] = m["ap"], m["ap50"]
        out[f"_cpu_seconds_{name}"] = time.process_time() - started
        started = time.process_time()

    expert = None
    if any(m.startswith("gt_expert") for m in methods):
        steps = expert_steps if expert_steps is not None else max(ctx.steps // 4, 1)
        expert = _expert(ctx, source, steps, torch.Generator().manual_seed(seed + 1))
        record("expert", expert)
    builders: dict[str, Callable[[], MeanTeacher]] = {
        "mt": MeanTeacher,
        "gt": lambda: GroundedTeacher(cfg.steps),
        "gt_expert": lambda: GroundedTeacher(cfg.steps, expert=expert),
        "gt_expert_released": lambda: GroundedTeacher(cfg.steps, expert=expert, overwrite=True),
    }
    shared = baselines(ctx, cfg, seed=seed, source=source) if "mt" in methods else {}
    started = time.process_time()  # the shared runs are not this section's methods' time
    for name in methods:
        if name in shared:
            out[f"{name}_ap"], out[f"{name}_ap50"] = shared[name]["ap"], shared[name]["ap50"]
        elif name == "source":
            record(name, source)
        elif name == "adabn":
            record(name, recalibrate_bn(source, ctx.target_train.images))
        else:
            g = torch.Generator().manual_seed(seed)  # the same draws for every method
            record(name, adapt(ctx, builders[name](), config=cfg, generator=g, source=source))
    if "mt" in methods and "gt" in methods:
        out["gt_minus_mt_ap"] = out["gt_ap"] - out["mt_ap"]
    return out


def demo_run(seed: int = 0) -> dict[str, Any]:
    """A tiny standalone run (tests): 8 source scenes, 4 target scenes, 2 steps each."""
    ctx = make_context(
        seed, preset="demo", train_scenes=8, test_scenes=2, target_scenes=4, steps=2, batch_size=4
    )
    return run_gt(ctx, torch.Generator().manual_seed(seed), PRESETS["demo"], expert_steps=1)


SECTIONS: dict[str, Callable[[DetContext, torch.Generator], dict[str, Any]]] = {
    "grounded_teacher": gt_section
}
