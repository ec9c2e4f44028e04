"""`posneg bench ood` runners of the Mahalanobis detector (Lee et al., NeurIPS 2018).

- ``mahalanobis_last``: the penultimate layer only, no pre-processing (ε = 0).
- ``mahalanobis_uniform``: every probed layer, ε = 0, uniform weights (``validation="none"``).
- ``mahalanobis_adv``: the feature ensemble with ε and the regression tuned on FGSM examples of
  the ID validation split (the paper's "validation on adversarial" variant; no knowledge of the
  test OOD). Needs the adversarial validation set (``ctx.extra["val_ood"]["fgsm"]``); without it
  the runner raises ``LookupError`` and the bench reports it as skipped.
- ``mahalanobis_ood``: the official, optimistic protocol, tuned on validation samples of the
  OOD distributions themselves. The official code tunes one model per OOD set; a runner must give
  one score for the shared ID test set, so here one model is tuned on the union of every
  validation OOD set (near, far, adversarial), which sees every test distribution.
"""

from __future__ import annotations

import torch

from posneg.bench._ood_context import OODContext, Runner
from posneg.ood.mahalanobis import EPSILONS, MahalanobisEnsemble

__all__ = ["RUNNERS"]


def _val_ood(ctx: OODContext) -> dict[str, torch.Tensor]:
    val = ctx.extra.get("val_ood", {})
    return dict(val) if isinstance(val, dict) else {}


def _ensemble(ctx: OODContext, validation: str, layers: slice = slice(None)) -> MahalanobisEnsemble:
    def layer_fn(x: torch.Tensor) -> list[torch.Tensor]:
        return ctx.model.layer_features(x)[layers]

    with torch.no_grad():
        feats = layer_fn(ctx.train_x)
    eps = EPSILONS if validation != "none" else (0.0,)
    det = MahalanobisEnsemble(epsilons=eps, validation=validation, input_std=ctx.input_std)
    det.fit(feats, ctx.train_y)
    if validation == "none":
        det.tune(layer_fn, ctx.val_x)
    elif validation == "adversarial":
        val = _val_ood(ctx)
        if "fgsm" not in val:
            raise LookupError("no FGSM validation set (posneg.adversarial.attacks is absent)")
        det.tune(layer_fn, ctx.val_x, val["fgsm"])
    else:
        val = _val_ood(ctx)
        if not val:
            raise LookupError("no validation OOD sets in ctx.extra['val_ood']")
        det.tune(layer_fn, ctx.val_x, torch.cat(list(val.values())))
    return det


def _runner(validation: str, layers: slice = slice(None)) -> Runner:
    def run(ctx: OODContext, generator: torch.Generator) -> dict[str, torch.Tensor]:
        det = _ensemble(ctx, validation, layers)

        def layer_fn(x: torch.Tensor) -> list[torch.Tensor]:
            return ctx.model.layer_features(x)[layers]

        return {k: det.score_inputs(layer_fn, x) for k, x in ctx.eval_sets.items()}

    return run


RUNNERS: dict[str, Runner] = {
    "mahalanobis_last": _runner("none", slice(-1, None)),
    "mahalanobis_uniform": _runner("none"),
    "mahalanobis_adv": _runner("adversarial"),
    "mahalanobis_ood": _runner("ood"),
}
