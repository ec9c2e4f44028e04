"""`posneg bench detection` section "wscol": target AP after source-free adaptation with WSCoL.

Yang et al., *Rethinking Weak-to-Strong Augmentation in Source-Free Domain Adaptive Object
Detection*, arXiv 2410.05557 (2024), on the bench's pasted-digit scenes with the source-free
harness of :mod:`posneg.bench._det_sfda` (source detector, AdaBN, mean teacher: EMA teacher on
the weak view, student on the strong view, pseudo-labels above 0.3, focal loss with ATSS
assignment of the pseudo boxes). Target-domain AP (COCO-style, held-out target scenes) per seed:

- ``source``: the source detector; ``adabn``: with target BatchNorm statistics;
- ``mt``: the plain mean teacher (:func:`posneg.bench._det_sfda.adapt`);
- ``wscol``: the same loop (same draws) plus WSCoL's contrastive term
  (:class:`posneg.detection.wscol.WSCoLLoss`, weight 0.5 as in ``train.sh``, tau 0.07), added
  through the harness's ``extra_loss`` hook (:class:`WSCoL`).

``source``, ``adabn`` and ``mt`` are the seed's shared baselines
(:func:`posneg.bench._det_sfda.baselines`): the numbers the Grounded Teacher section reports,
computed once.

How WSCoL's pieces map onto the one-stage detector (the paper's is a Faster R-CNN):

- *proposals*: per scene the ``proposals`` anchors with the highest teacher score on the weak
  view (max class sigmoid, the detector has no RPN);
- *ROI features*: the classification tower's output at those anchors, for the student on the
  strong view (with gradient) and the teacher on the weak view, both through one mapping net
  (Linear 32 -> 64, ReLU, Linear 64 -> 32, trained with the student; the release's ``CNN`` +
  ``fc_pol``), the teacher's detached;
- *pseudo-labels*: a proposal whose teacher-decoded box has IoU >= 0.5 with a pseudo box takes
  its class (``fg_index``, ``fg_labels``; the release's matcher threshold); the others are
  relabelled by :func:`~posneg.detection.wscol.prototype_cluster_labels` on the weak features
  with ``K + 1`` teacher logits ``log(p_1 .. p_K, prod_k (1 - p_k))`` (the sigmoid head made a
  softmax over classes and background);
- *prototypes*: a per-class FIFO of the 10 latest teacher features of matched proposals,
  mapped by the current net, EMA 0.4 (:func:`~posneg.detection.wscol.update_prototypes`);
- *background switch*: :func:`~posneg.detection.wscol.proposal_variance` of the teacher's
  decoded boxes with score > 0.5 (V > 20: foreground proposals only).

Also reported, from the target labels (analysis only; never trained on): the accuracy of the
teacher's arg max (``pse_acc``) and of the clustering (``cluster_acc``) on proposals whose box
matches a ground-truth box (IoU >= 0.5), as the release logs them (the card's check: cluster_acc
>= pse_acc), and the share of steps where the switch dropped the background. Claim checked:
WSCoL improves target AP over the mean teacher (paper: state of the art on Cityscapes -> Foggy
and other benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from posneg.bench._det_context import DetContext
from posneg.bench._det_model import TinyDetector, decode
from posneg.bench._det_sfda import (
    PRESETS,
    MeanTeacher,
    PseudoBatch,
    SFDAConfig,
    StudentOutputs,
    adapt,
    baselines,
    forward_with_features,
    make_context,
    source_detector,
    target_ap,
)
from posneg.detection.boxes import box_iou
from posneg.detection.wscol import (
    WSCoLLoss,
    proposal_variance,
    prototype_cluster_labels,
    update_prototypes,
)

__all__ = ["METHODS", "SECTIONS", "WSCoL", "adapt_wscol", "run_wscol", "wscol_section"]

METHODS = ("source", "adabn", "mt", "wscol")
PROPOSALS = 32
BANK = 10


class _State:
    """WSCoL's running state: mapping net, memory bank, prototypes, logged accuracies."""

    def __init__(self, k: int, width: int, seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.mapper = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 32))
        self.k = k
        self.bank: list[list[torch.Tensor]] = [[] for _ in range(k)]
        self.proto = torch.zeros(k, 32)
        self.init = torch.zeros(k, dtype=torch.bool)
        self.loss = WSCoLLoss(num_classes=k, weight=0.5)
        self.hits = {"pse": 0, "cluster": 0, "n": 0, "fg_only": 0, "terms": 0}

    def prototypes(self) -> torch.Tensor | None:
        feats = [f for c in range(self.k) for f in self.bank[c][-BANK:]]
        labels = [c for c in range(self.k) for _ in self.bank[c][-BANK:]]
        if feats:
            with torch.no_grad():
                mapped = self.mapper(torch.stack(feats))
            self.proto, self.init = update_prototypes(
                prototypes=self.proto,
                initialized=self.init,
                features=mapped,
                labels=torch.tensor(labels),
                momentum=0.4,
            )
        return self.proto if bool(self.init.all()) else None


def _wscol_term(
    state: _State,
    teacher: TinyDetector,
    batch: PseudoBatch,
    s_feat: torch.Tensor,
    gt: tuple[list[torch.Tensor], list[torch.Tensor]] | None,
) -> torch.Tensor:
    with torch.no_grad():
        t_logits, t_deltas, t_feat = forward_with_features(teacher, batch.weak)
        t_boxes = decode(t_deltas, teacher.anchors)
    total, terms = s_feat.sum() * 0, 0
    for b in range(batch.weak.shape[0]):
        prob = t_logits[b].sigmoid()
        score = prob.max(1).values
        prop = torch.topk(score, k=min(PROPOSALS, len(score))).indices
        boxes = t_boxes[b, prop]
        fg_index = torch.zeros(0, dtype=torch.int64)
        fg_labels = torch.zeros(0, dtype=torch.int64)
        if len(batch.boxes[b]):
            iou = box_iou(boxes, batch.boxes[b].float())
            best, which = iou.max(1)
            fg_index = torch.nonzero(best >= 0.5).flatten()
            fg_labels = batch.labels[b][which[fg_index]]
            for i, c in zip(fg_index.tolist(), fg_labels.tolist(), strict=True):
                state.bank[c] = [*state.bank[c][-(BANK - 1) :], t_feat[b, prop[i]]]
        p = prob[prop].clamp(1e-6, 1 - 1e-6)
        bg = torch.log1p(-p).sum(1, keepdim=True)
        k1 = torch.cat((torch.log(p), bg), 1)
        z_t = state.mapper(t_feat[b, prop]).detach()
        cl = prototype_cluster_labels(
            features=z_t,
            logits=k1,
            fg_index=fg_index,
            fg_labels=fg_labels,
            prototypes=state.prototypes(),
        )
        if gt is not None and len(gt[0][b]):
            iou = box_iou(boxes, gt[0][b])
            best, which = iou.max(1)
            m = best >= 0.5
            true = gt[1][b][which[m]]
            state.hits["pse"] += int((k1[m].argmax(1) == true).sum())
            state.hits["cluster"] += int((cl.labels[m] == true).sum())
            state.hits["n"] += int(m.sum())
        keep = score > 0.5
        v = proposal_variance(boxes=t_boxes[b, keep], scores=score[keep])
        if int((cl.labels != state.k).sum()) > 2:
            state.hits["terms"] += 1
            state.hits["fg_only"] += int(v > state.loss.variance_threshold)
            terms += 1
        z_s = state.mapper(s_feat[b, prop])
        total = total + state.loss(z_s, z_t, cl.labels, v)
    return total / max(terms, 1)


class WSCoL(MeanTeacher):
    """WSCoL's hooks on the mean-teacher harness: ``weight`` x the contrastive term.

    :meth:`extra_loss` is :func:`_wscol_term` on the student's cls-tower features of the strong
    view and the teacher's of the weak view; the mapping net is trained with the student
    (:meth:`extra_parameters`). The target labels of the step's scenes are read for the logged
    accuracies only.
    """

    name = "wscol"
    features = True

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight
        self.state: _State | None = None
        self.scenes: Any = None

    def start(self, ctx: DetContext, source: TinyDetector, generator: torch.Generator) -> None:
        self.state = _State(ctx.num_classes, source.cls.in_channels, ctx.seed)
        self.scenes = ctx.target_train

    def extra_parameters(self) -> list[nn.Parameter]:
        return [] if self.state is None else list(self.state.mapper.parameters())

    def extra_loss(
        self, out: StudentOutputs, batch: PseudoBatch, teacher: TinyDetector, step: int
    ) -> torch.Tensor | None:
        if self.weight <= 0 or self.state is None or out.features is None:
            return None
        index = batch.index.tolist()
        gt = ([self.scenes.boxes[i] for i in index], [self.scenes.labels[i] for i in index])
        return self.weight * _wscol_term(self.state, teacher, batch, out.features, gt)

    def log(self) -> dict[str, float]:
        """``pse_acc``, ``cluster_acc`` and ``fg_only_share`` of the run (NaN when undefined)."""
        nan = float("nan")
        if self.state is None:
            return {"pse_acc": nan, "cluster_acc": nan, "fg_only_share": nan}
        h = self.state.hits
        return {
            "pse_acc": h["pse"] / h["n"] if h["n"] else nan,
            "cluster_acc": h["cluster"] / h["n"] if h["n"] else nan,
            "fg_only_share": h["fg_only"] / h["terms"] if h["terms"] else nan,
        }


def adapt_wscol(
    ctx: DetContext,
    *,
    config: SFDAConfig,
    generator: torch.Generator,
    source: TinyDetector,
    weight: float = 1.0,
    log: dict[str, float] | None = None,
) -> TinyDetector:
    """:func:`~posneg.bench._det_sfda.adapt` with :class:`WSCoL` (same draws as the plain
    :class:`~posneg.bench._det_sfda.MeanTeacher`; ``weight`` 0 is that mean teacher)."""
    method = WSCoL(weight)
    teacher = adapt(ctx, method, config=config, generator=generator, source=source)
    if log is not None:
        log.update(method.log())
    return teacher


def wscol_section(ctx: DetContext, generator: torch.Generator) -> dict[str, Any]:
    """Target AP (and AP50) of every method of :data:`METHODS` for one seed."""
    return run_wscol(ctx, generator, PRESETS.get(ctx.preset, PRESETS["default"]))


def run_wscol(
    ctx: DetContext,
    generator: torch.Generator,
    cfg: SFDAConfig,
    *,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    """Run ``methods`` on ``ctx`` with the harness config ``cfg``; metrics keyed by method."""
    # the seed first: the same for every section given the same generator, whether or not
    # source_detector trains (draws) here (it does not in the bench: ctx.source_detector)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    source = source_detector(ctx, generator)
    out: dict[str, Any] = {}

    def record(name: str, model: TinyDetector) -> None:
        m = target_ap(ctx, model)
        out[f"{name}_ap"], out[f"{name}_ap50"] = m["ap"], m["ap50"]

    shared = baselines(ctx, cfg, seed=seed, source=source)
    for name in methods:
        if name in shared:
            out[f"{name}_ap"], out[f"{name}_ap50"] = shared[name]["ap"], shared[name]["ap50"]
        elif name == "wscol":
            log: dict[str, float] = {}
            g = torch.Generator().manual_seed(seed)  # the mean teacher's draws
            record(name, adapt_wscol(ctx, config=cfg, generator=g, source=source, log=log))
            out.update(log)
        else:
            raise ValueError(f"run_wscol: unknown method {name!r}; known: {', '.join(METHODS)}")
    if "mt" in methods and "wscol" in methods:
        out["wscol_minus_mt_ap"] = out["wscol_ap"] - out["mt_ap"]
    return out


def demo_run(seed: int = 0) -> dict[str, Any]:
    """A tiny standalone run (tests): 40 source scenes, 8 target scenes, a few steps."""
    ctx = make_context(seed, preset="demo", train_scenes=40, target_scenes=8, steps=5)
    return run_wscol(ctx, torch.Generator().manual_seed(seed), PRESETS["demo"])


SECTIONS: dict[str, Callable[[DetContext, torch.Generator], dict[str, Any]]] = {
    "wscol": wscol_section
}
