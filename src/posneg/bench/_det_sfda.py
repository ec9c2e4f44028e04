"""Source-free detection adaptation for `posneg bench detection` sections (Grounded Teacher, WSCoL).

The protocol every source-free section shares, on the bench's tiny single-stage detector
(:mod:`posneg.bench._det_model`):

1. **Source model.** ``ctx.source_detector`` (trained on ``ctx.source_train`` with ATSS by the
   bench) or, where the bench gave none, one trained here once per (seed, preset) and cached
   (:func:`source_detector`). The source scenes are not used after that.
2. **Mean teacher** on ``ctx.target_train`` without its labels (Tarvainen and Valpola, 2017, as
   used by Unbiased/Adaptive Teacher and both papers' code): teacher and student start as copies
   of the source model; each step draws ``batch_size`` target scenes (:meth:`MeanTeacher.sample`),
   the teacher (eval mode) labels the *weak* view (the scene as is) with its detections of
   score > ``threshold`` after NMS (:func:`teacher_labels`), the student (train mode) sees the
   *strong* view (:func:`strong_view`: per-scene brightness/contrast jitter, per-pixel noise and
   a random grey-scale conversion; no geometric change, so the boxes stay valid) and is trained
   on the pseudo-labels: sigmoid focal loss (gamma 2, alpha 0.25) over all anchors, ATSS
   assignment of the pseudo boxes, divided by the number of positives; the pseudo boxes'
   GIoU regression is weighted by ``pseudo_box_weight`` (0 by default, as in Adaptive/Unbiased
   Teacher and Grounded Teacher's ``TARGET_BBOX = False``). Adam. After every step the teacher
   becomes an EMA of the student (``keep_rate``; floating buffers too, as the released
   ``_update_teacher_model`` averages the whole ``state_dict``).
3. **Target AP** of the teacher on ``ctx.target_test`` (:func:`target_ap`).

A method changes the loop through the hooks of :class:`MeanTeacher` (subclass it):
``sample`` (which target scenes), ``pseudo_labels`` (change the teacher's labels, e.g. add an
expert's), ``mix`` (change the strong view and its labels, with soft class targets),
``extra_passes`` (more student passes in the same step, e.g. on an expert's labels),
``anchor_weights`` (per-anchor weights of the classification loss), ``extra_loss`` (a term
added to the student's loss from its outputs, e.g. a contrastive loss on its features; with
``features = True`` the outputs carry the classification tower's features, and
``extra_parameters`` are trained with the student) and ``observe`` (see the student's assigned
labels and logits after each step, e.g. to update a running statistic).

**Shared baselines**: :func:`baselines` runs source, AdaBN and the plain mean teacher once per
seed (cached in ``ctx.extra[CACHE]``); every source-free section reports against them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench._det_context import DetContext, DetScenes
from posneg.bench._det_model import TinyDetector, _giou_loss, decode, predict, train_detector
from posneg.detection.atss import atss_assign
from posneg.losses.focal import focal

__all__ = [
    "CACHE",
    "PRESETS",
    "MeanTeacher",
    "PseudoBatch",
    "SFDAConfig",
    "StudentOutputs",
    "adapt",
    "assign_pseudo",
    "baselines",
    "forward_with_features",
    "make_context",
    "recalibrate_bn",
    "source_detector",
    "strong_view",
    "target_ap",
    "teacher_labels",
]


@dataclass(frozen=True)
class SFDAConfig:
    """One adaptation run.

    Attributes:
        steps: student updates.
        batch_size: target scenes per step.
        lr: Adam learning rate (constant).
        keep_rate: the teacher's EMA keep rate per step.
        threshold: teacher score above which a detection becomes a pseudo-label.
        pseudo_box_weight: weight of the GIoU loss on the pseudo boxes (0: classification only).
        recalibrate_bn: before adapting, recompute the BatchNorm statistics on the unlabelled
            target scenes (AdaBN; source-free) and keep them frozen while the student trains.
    """

    steps: int = 75
    batch_size: int = 8
    lr: float = 1e-4
    keep_rate: float = 0.99
    threshold: float = 0.3
    pseudo_box_weight: float = 0.0
    recalibrate_bn: bool = True


#: ``default``: ~6 CPU-seconds per run on one thread (75 steps of 8); ``demo``: a smoke run.
PRESETS = {"default": SFDAConfig(), "demo": SFDAConfig(steps=2, batch_size=2)}


@dataclass
class PseudoBatch:
    """A step's student input and its pseudo-labels.

    Attributes:
        index: ``(B,)`` indices into the target scenes.
        images: ``(B, 3, S, S)`` the strong view (what the student sees).
        weak: ``(B, 3, S, S)`` the weak view (what the teacher saw).
        boxes: per scene ``(n_i, 4)`` xyxy pseudo boxes.
        labels: per scene ``(n_i,)`` int64 hard classes.
        scores: per scene ``(n_i,)`` teacher (or expert) confidences.
        soft: per scene ``(n_i, K)`` soft class targets (rows of a one-hot for plain labels).
    """

    index: torch.Tensor
    images: torch.Tensor
    weak: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    scores: list[torch.Tensor]
    soft: list[torch.Tensor]


@dataclass
class StudentOutputs:
    """The student's forward pass on a step's strong view (what ``extra_loss`` sees).

    Attributes:
        logits: ``(B, A, K)`` classification logits (with gradient).
        deltas: ``(B, A, 4)`` box deltas (with gradient).
        features: ``(B, A, W)`` the classification tower's output per anchor (with gradient),
            or None unless the method sets ``features = True``.
        labels: ``(B, A)`` the anchors' assigned pseudo-label classes (-1 background).
    """

    logits: torch.Tensor
    deltas: torch.Tensor
    features: torch.Tensor | None
    labels: torch.Tensor


class MeanTeacher:
    """The plain mean teacher; subclasses override the hooks (each default does nothing).

    ``features = True``: ``extra_loss`` gets the student's per-anchor features.
    """

    name = "mean_teacher"
    features = False

    def start(self, ctx: DetContext, source: TinyDetector, generator: torch.Generator) -> None:
        """Called once before the first step."""

    def sample(self, n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Which of the ``n`` target scenes the step uses (uniform, with replacement)."""
        return torch.randint(0, n, (batch_size,), generator=generator)

    def pseudo_labels(self, batch: PseudoBatch, step: int) -> PseudoBatch:
        """Change the teacher's pseudo-labels (default: keep them)."""
        return batch

    def mix(self, batch: PseudoBatch, step: int, generator: torch.Generator) -> PseudoBatch:
        """Change the strong view and its labels (default: keep them)."""
        return batch

    def extra_passes(self, batch: PseudoBatch, step: int) -> list[PseudoBatch]:
        """More student passes whose losses are added to this step's (default: none)."""
        return []

    def anchor_weights(
        self, labels: torch.Tensor, soft: torch.Tensor, logits: torch.Tensor, step: int
    ) -> torch.Tensor | None:
        """Per-anchor classification weights ``(B, A)`` (default None: all 1).

        ``labels`` ``(B, A)`` assigned classes (-1 background), ``soft`` ``(B, A, K)`` their
        soft targets, ``logits`` ``(B, A, K)`` the student's (detached).
        """
        return None

    def extra_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the student's (default: none); read after ``start``."""
        return []

    def extra_loss(
        self, out: StudentOutputs, batch: PseudoBatch, teacher: TinyDetector, step: int
    ) -> torch.Tensor | None:
        """A term added to the student's loss on ``batch`` (default None: nothing).

        ``teacher`` is this step's teacher (before its EMA update), eval mode; the method may
        run it on ``batch.weak`` (under ``torch.no_grad``).
        """
        return None

    def observe(self, labels: torch.Tensor, logits: torch.Tensor, step: int) -> None:
        """See the assigned labels ``(B, A)`` and the student's logits after each step."""


_SOURCE_CACHE: dict[tuple[int, str, int, int, float], TinyDetector] = {}


def source_detector(ctx: DetContext, generator: torch.Generator) -> TinyDetector:
    """``ctx.source_detector``, or one trained on ``ctx.source_train`` (cached per seed/preset)."""
    if isinstance(ctx.source_detector, TinyDetector):
        return ctx.source_detector
    scenes = ctx.source_train
    # the scenes' size and a checksum too: two contexts of one seed may hold other scenes
    key = (ctx.seed, ctx.preset, ctx.num_classes, len(scenes), float(scenes.images[:8].sum()))
    if key not in _SOURCE_CACHE:
        model = ctx.make_detector(generator)
        if not isinstance(model, TinyDetector):
            raise TypeError("source_detector: ctx.make_detector must build a TinyDetector")
        ctx.train_detector(model, ctx.source_train, assigner="atss", generator=generator)
        _SOURCE_CACHE[key] = model.eval()
    return _SOURCE_CACHE[key]


def strong_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Photometric strong augmentation, one draw per scene (boxes unchanged).

    Brightness shift U(-0.2, 0.2), contrast factor U(0.6, 1.4) around the scene mean, grey-scale
    with probability 0.2, then Gaussian noise of std 0.03; clipped to [0, 1].
    """
    b = images.shape[0]
    dev, dt = images.device, images.dtype
    u = torch.rand(b, 4, generator=generator).to(dev, dt)
    bright = (u[:, 0] * 0.4 - 0.2).view(b, 1, 1, 1)
    contrast = (u[:, 1] * 0.8 + 0.6).view(b, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    x = (images - mean) * contrast + mean + bright
    grey = x.mean(dim=1, keepdim=True).expand_as(x)
    x = torch.where((u[:, 2] < 0.2).view(b, 1, 1, 1), grey, x)
    noise = torch.randn(images.shape, generator=generator).to(dev, dt) * 0.03
    return (x + noise).clamp(0, 1)


def teacher_labels(
    teacher: TinyDetector, images: torch.Tensor, threshold: float
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """The teacher's detections with score > ``threshold``: boxes, labels, scores per scene."""
    dets = predict(teacher, images, score_thresh=min(threshold, 0.05))
    boxes, labels, scores = [], [], []
    for d in dets:
        keep = d.scores > threshold  # as threshold_bbox: strictly above
        boxes.append(d.boxes[keep])
        labels.append(d.labels[keep])
        scores.append(d.scores[keep])
    return boxes, labels, scores


def assign_pseudo(
    model: TinyDetector, batch: PseudoBatch, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ATSS targets of the pseudo boxes: labels ``(B, A)``, soft targets ``(B, A, K)``, boxes."""
    anchors = model.anchors.cpu()
    labs: list[torch.Tensor] = []
    softs: list[torch.Tensor] = []
    tgts: list[torch.Tensor] = []
    for boxes, soft in zip(batch.boxes, batch.soft, strict=True):
        lab = torch.argmax(soft, dim=1) if len(soft) else torch.zeros(0, dtype=torch.int64)
        a = atss_assign(
            anchors=anchors,
            num_anchors_per_level=model.num_anchors_per_level,
            gt_boxes=boxes.float().cpu(),
            gt_labels=lab,
        )
        idx = a.gt_index.clamp(min=0)
        pos = (a.labels >= 0)[:, None]
        if len(boxes):
            softs.append(soft.float().cpu()[idx] * pos)
            tgts.append(boxes.float().cpu()[idx])
            # the hard label of a mixed box is the method's (batch.labels), not argmax(soft)
            hard = batch.labels[len(labs)].cpu()[idx]
            labs.append(torch.where(a.labels >= 0, hard, a.labels))
        else:
            softs.append(torch.zeros(len(anchors), num_classes))
            tgts.append(torch.zeros(len(anchors), 4))
            labs.append(a.labels)
    return torch.stack(labs), torch.stack(softs), torch.stack(tgts)


@torch.no_grad()
def recalibrate_bn(model: TinyDetector, images: torch.Tensor, batch_size: int = 50) -> TinyDetector:
    """A copy of ``model`` whose BatchNorm statistics are those of ``images`` (AdaBN), eval mode."""
    out = copy.deepcopy(model)
    for m in out.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
    out.train()
    device = out.anchors.device
    for start in range(0, len(images), batch_size):
        out(images[start : start + batch_size].to(device))
    return out.eval()


def _freeze_bn(model: TinyDetector) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _ema(teacher: TinyDetector, student: TinyDetector, keep_rate: float) -> None:
    with torch.no_grad():
        s = student.state_dict()
        for k, v in teacher.state_dict().items():
            if v.is_floating_point():
                v.mul_(keep_rate).add_(s[k], alpha=1 - keep_rate)
            else:
                v.copy_(s[k])


def forward_with_features(
    model: TinyDetector, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits (B, A, K)``, ``deltas (B, A, 4)`` and the cls-tower features ``(B, A, W)``
    (the tower's output before the class conv, in the anchors' order; a forward hook)."""
    outs: list[torch.Tensor] = []
    handle = model.cls_tower.register_forward_hook(lambda _m, _i, o: outs.append(o))
    try:
        logits, deltas = model(images)
    finally:
        handle.remove()
    b = images.shape[0]
    feats = torch.cat([o.permute(0, 2, 3, 1).reshape(b, -1, o.shape[1]) for o in outs], 1)
    return logits, deltas, feats


def _student_loss(
    student: TinyDetector,
    batch: PseudoBatch,
    method: MeanTeacher,
    cfg: SFDAConfig,
    step: int,
    teacher: TinyDetector | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    device = student.anchors.device
    labels, soft, tgt = assign_pseudo(student, batch, student.num_classes)
    labels, soft, tgt = labels.to(device), soft.to(device), tgt.to(device)
    feats = None
    if teacher is not None and method.features:
        logits, deltas, feats = forward_with_features(student, batch.images.to(device))
    else:
        logits, deltas = student(batch.images.to(device))
    pos = labels >= 0
    num_pos = max(int(pos.sum()), 1)
    per_anchor = focal(logits, soft, gamma=2.0, alpha=0.25, reduction="none").sum(-1)
    w = method.anchor_weights(labels, soft, logits.detach(), step)
    if w is not None:
        per_anchor = per_anchor * w
    loss = per_anchor.sum() / num_pos
    if cfg.pseudo_box_weight > 0 and bool(pos.any()):
        anchors = student.anchors.expand(labels.shape[0], -1, -1)[pos]
        pred = decode(deltas[pos][None], anchors)[0]
        loss = loss + cfg.pseudo_box_weight * _giou_loss(pred, tgt[pos]).mean()
    if teacher is not None:
        more = method.extra_loss(
            StudentOutputs(logits, deltas, feats, labels), batch, teacher, step
        )
        if more is not None:
            loss = loss + more
    return loss, labels, logits.detach()


def adapt(
    ctx: DetContext,
    method: MeanTeacher,
    *,
    config: SFDAConfig | None = None,
    generator: torch.Generator,
    source: TinyDetector | None = None,
) -> TinyDetector:
    """Adapt a copy of the source detector to ``ctx.target_train``; returns the teacher (eval)."""
    cfg = config if config is not None else PRESETS.get(ctx.preset, PRESETS["default"])
    base = source if source is not None else source_detector(ctx, generator)
    if cfg.recalibrate_bn:
        base = recalibrate_bn(base, ctx.target_train.images)
    teacher = copy.deepcopy(base).eval()
    student = copy.deepcopy(base).train()
    scenes = ctx.target_train
    method.start(ctx, base, generator)
    opt = torch.optim.Adam([*student.parameters(), *method.extra_parameters()], lr=cfg.lr)
    for step in range(cfg.steps):
        index = method.sample(len(scenes), cfg.batch_size, generator)
        weak = scenes.images[index]
        boxes, labels, scores = teacher_labels(teacher, weak, cfg.threshold)
        soft = [F.one_hot(lab, ctx.num_classes).float() for lab in labels]
        batch = PseudoBatch(index, strong_view(weak, generator), weak, boxes, labels, scores, soft)
        batch = method.pseudo_labels(batch, step)
        batch = method.mix(batch, step, generator)
        extra = method.extra_passes(batch, step)
        student.train()
        if cfg.recalibrate_bn:
            _freeze_bn(student)
        loss, assigned, logits = _student_loss(student, batch, method, cfg, step, teacher)
        for more in extra:
            loss = loss + _student_loss(student, more, method, cfg, step)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.observe(assigned, logits, step)
        _ema(teacher, student, cfg.keep_rate)
    return teacher.eval()


def target_ap(
    ctx: DetContext, model: TinyDetector, scenes: DetScenes | None = None
) -> dict[str, Any]:
    """COCO-style AP of ``model`` on ``ctx.target_test`` (or ``scenes``)."""
    s = scenes if scenes is not None else ctx.target_test
    return ctx.evaluate(ctx.predict(model, s.images), s)


#: The key of the per-seed cache of :func:`baselines` in ``DetContext.extra`` (a dict).
CACHE = "sfda_cache"
BASELINES = ("source", "adabn", "mt")


def baselines(
    ctx: DetContext, config: SFDAConfig, *, seed: int, source: TinyDetector
) -> dict[str, dict[str, Any]]:
    """Target AP of the source detector, of AdaBN and of the plain mean teacher.

    The mean teacher is :func:`adapt` with ``MeanTeacher()`` and a generator seeded with
    ``seed`` (methods compared with it use the same seed). ``{"source", "adabn", "mt"}: metrics``
    (and ``"_cpu_seconds"``) is kept in ``ctx.extra[CACHE]`` when that is a dict, keyed by
    ``seed``, ``config`` and the source, so the source-free sections of a seed share one run.
    """
    cache = ctx.extra.get(CACHE)
    key = (seed, config, id(source))
    if isinstance(cache, dict) and key in cache:
        hit: dict[str, dict[str, Any]] = cache[key]
        return hit
    started = time.process_time()
    out: dict[str, dict[str, Any]] = {
        "source": target_ap(ctx, source),
        "adabn": target_ap(ctx, recalibrate_bn(source, ctx.target_train.images)),
    }
    g = torch.Generator().manual_seed(seed)
    out["mt"] = target_ap(ctx, adapt(ctx, MeanTeacher(), config=config, generator=g, source=source))
    out["_cpu_seconds"] = {"all": time.process_time() - started}
    if isinstance(cache, dict):
        cache[key] = out
    return out


def make_context(
    seed: int = 0,
    *,
    preset: str = "default",
    classes: int = 3,
    train_scenes: int = 600,
    test_scenes: int = 150,
    target_scenes: int = 100,
    steps: int = 400,
    batch_size: int = 16,
) -> DetContext:
    """A :class:`DetContext` built as the bench builds it (for tests and standalone runs).

    The scenes are those of `posneg bench detection` with the same seed and sizes (same draws in
    the same order; the long-tailed split is not drawn and ``longtail_train`` is the source).
    """
    from posneg.bench._det_model import evaluate
    from posneg.bench._det_scenes import make_scenes

    g = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = {"classes": classes, "min_size": 12.0, "generator": g}
    source = make_scenes(train_scenes, **kw)
    source_test = make_scenes(test_scenes, split="test", **kw)
    target = make_scenes(target_scenes, domain="target", **kw)
    target_test = make_scenes(target_scenes, domain="target", split="test", **kw)

    def make(generator: torch.Generator) -> TinyDetector:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            return TinyDetector(classes)

    def train(m: TinyDetector, scenes: DetScenes, **kw: Any) -> TinyDetector:
        kw.setdefault("steps", steps)
        kw.setdefault("batch_size", batch_size)
        return train_detector(m, scenes, **kw)

    return DetContext(
        source_train=source,
        source_test=source_test,
        target_train=target,
        target_test=target_test,
        longtail_train=source,
        num_classes=classes,
        image_size=64,
        make_detector=make,
        train_detector=train,
        predict=predict,
        evaluate=evaluate,
        steps=steps,
        preset=preset,
        seed=seed,
        extra={CACHE: {}},
    )
