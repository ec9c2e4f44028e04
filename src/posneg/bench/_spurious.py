"""A CounterAnimal-style run on digits with a spurious border (posneg.ood.counteranimal).

Data: scikit-learn's 8x8 digits (all 10 classes, pixel / 16), padded to 10x10 with a one-pixel
border of intensity 0.75 ("bright", attribute 1) or 0.25 ("dark", attribute 0). A class's usual
border is its parity (odd digits bright). In the *correlated* training set the border agrees
with the parity for ``agree`` (95%) of the images; in the *balanced* one it is a fair coin. The
test set is balanced: **common** = border agrees with the parity, **counter** = flipped.

Classifiers (each trained from ``seed``): a linear softmax and an MLP on the correlated data, the
same MLP on balanced data (the control, expected drop ~ 0), and a CLIP-style two-tower model
(:mod:`posneg.bench._two_tower`) trained contrastively on (image, "a photo of the digit k") pairs
of the correlated data and used zero-shot. The reference line of the effective robustness is
fitted (logit axes) over linear models trained on the correlated data with 10%-100% of it.

:func:`spurious_rows` returns one row per (seed, model): group accuracies, pooled and
class-averaged drops, effective robustness. About 22 s per seed (defaults) on a loaded CPU core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench._ood_clipn import caption_tokens
from posneg.bench._two_tower import TwoTower, pretrain
from posneg.ood.counteranimal import (
    curate_counter_split,
    effective_robustness,
    group_accuracy,
    split_by_attribute,
)

__all__ = ["REFERENCE_FRACTIONS", "curator_bias_rows", "load_spurious_digits", "spurious_rows"]

REFERENCE_FRACTIONS = (0.1, 0.2, 0.35, 0.6, 1.0)
BRIGHT, DARK = 0.75, 0.25


def _with_border(x: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
    level = torch.where(attribute.bool(), BRIGHT, DARK).to(x.dtype)
    out = level[:, None, None].expand(-1, 10, 10).clone()
    out[:, 1:9, 1:9] = x
    return out[:, None]


def load_spurious_digits(*, seed: int, agree: float = 0.95) -> dict[str, dict[str, torch.Tensor]]:
    """Train (correlated and balanced borders) and balanced test sets; half of digits each."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    tr, te = perm[: len(y) // 2], perm[len(y) // 2 :]
    usual = torch.arange(10) % 2
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, idx, p in (("correlated", tr, agree), ("balanced", tr, 0.5), ("test", te, 0.5)):
        flip = torch.rand(len(idx), generator=g) >= p
        attr = torch.where(flip, 1 - usual[y[idx]], usual[y[idx]])
        out[name] = {"x": _with_border(x[idx], attr), "y": y[idx], "attribute": attr}
    out["test"]["counter"] = split_by_attribute(
        labels=out["test"]["y"], attribute=out["test"]["attribute"], usual=usual
    )
    return out


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(100, 10))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(100, 64), nn.ReLU(), nn.Linear(64, 10))


def _predict_two_tower(
    data: dict[str, dict[str, torch.Tensor]], seed: int, epochs: int
) -> torch.Tensor:
    x, y = data["correlated"]["x"], data["correlated"]["y"]
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoTower(image_features=100, vocab_size=16, max_len=8)
    pretrain(model, x, caption_tokens(y), epochs=epochs, batch_size=64, lr=2e-3, generator=g)
    with torch.no_grad():
        w = model.encode_text(caption_tokens(torch.arange(10)))
        return (model.encode_image(data["test"]["x"]) @ w.T).argmax(1)


def spurious_rows(
    *, seeds: Sequence[int] = (0,), steps: int = 300, clip_epochs: int = 30
) -> list[dict[str, Any]]:
    """One row per (seed, model): acc_common, acc_counter, drop, class_avg_drop, er_logit."""
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        data = load_spurious_digits(seed=seed)
        test = data["test"]
        preds: dict[str, tuple[str, torch.Tensor]] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # parameter init only
            ref = []
            xc, yc = data["correlated"]["x"], data["correlated"]["y"]
            for frac in REFERENCE_FRACTIONS:
                n = max(20, int(frac * len(yc)))
                m = _fit(_linear(), xc[:n], yc[:n], steps)
                r = group_accuracy(
                    y_true=test["y"], y_pred=m(test["x"]).argmax(1), counter=test["counter"]
                )
                ref.append((r.acc_common, r.acc_counter))
            preds["linear"] = ("correlated", _fit(_linear(), xc, yc, steps)(test["x"]).argmax(1))
            preds["mlp"] = ("correlated", _fit(_mlp(), xc, yc, steps)(test["x"]).argmax(1))
            xb, yb = data["balanced"]["x"], data["balanced"]["y"]
            preds["mlp_balanced"] = ("balanced", _fit(_mlp(), xb, yb, steps)(test["x"]).argmax(1))
        preds["two_tower_zero_shot"] = ("correlated", _predict_two_tower(data, seed, clip_epochs))
        ref_c = np.array([a for a, _ in ref])
        ref_k = np.array([b for _, b in ref])
        for name, (trained_on, pred) in preds.items():
            r = group_accuracy(y_true=test["y"], y_pred=pred.detach(), counter=test["counter"])
            er = effective_robustness(
                acc_common=[r.acc_common],
                acc_counter=[r.acc_counter],
                ref_common=ref_c,
                ref_counter=ref_k,
                scale="logit",
            )
            rows.append(
                {
                    "seed": seed,
                    "model": name,
                    "trained_on": trained_on,
                    "acc_common": r.acc_common,
                    "acc_counter": r.acc_counter,
                    "drop": r.drop,
                    "class_avg_drop": r.class_avg_drop,
                    "er_logit": float(er[0]),
                }
            )
    return rows


def curator_bias_rows(*, seeds: Sequence[int] = (0,), steps: int = 300) -> list[dict[str, Any]]:
    """The card's curator-bias check: curate the split with one model, evaluate on held-out data.

    Per seed, a linear curator (init ``seed``) trained on the correlated data picks, per class,
    the (common, counter) border pair with its largest drop on the first half of the test set
    (:func:`curate_counter_split`); rows give its drop there ("curation"), its drop on the
    second half with the same pairs ("held_out"), and the held-out drop of a linear model of
    another init (``seed + 1000``).
    """
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        data = load_spurious_digits(seed=seed)
        test, xc, yc = data["test"], data["correlated"]["x"], data["correlated"]["y"]
        half = len(test["y"]) // 2
        parts = (slice(0, half), slice(half, None))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            curator = _fit(_linear(), xc, yc, steps)
            torch.manual_seed(seed + 1000)
            other = _fit(_linear(), xc, yc, steps)
        with torch.no_grad():
            pred_c, pred_o = curator(test["x"]).argmax(1), other(test["x"]).argmax(1)
        y, attr = test["y"], test["attribute"]
        a = parts[0]
        _, pairs = curate_counter_split(
            correct=pred_c[a] == y[a], labels=y[a], attribute=attr[a], min_group=5
        )
        common = torch.tensor([pairs.get(int(c), (-1, -1))[0] for c in range(10)])
        counter = torch.tensor([pairs.get(int(c), (-1, -1))[1] for c in range(10)])
        for part, name in zip(parts, ("curation", "held_out"), strict=True):
            yy, at = y[part], attr[part]
            keep = (at == common[yy]) | (at == counter[yy])
            grp = (at == counter[yy])[keep]
            for model, pred in (("curator", pred_c), ("other_init", pred_o)):
                if model == "other_init" and name == "curation":
                    continue
                r = group_accuracy(y_true=yy[keep], y_pred=pred[part][keep], counter=grp)
                rows.append({"seed": seed, "model": model, "half": name, "drop": r.drop})
    return rows
