"""The CoDSA section of `posneg bench synthetic`: targeted against uniform synthetic budgets.

Tian, Shen, "Conditional Data Synthesis Augmentation", arXiv 2504.07426 (2025); no official
code (see :mod:`posneg.synthetic.codsa`). The card's small CPU check: scikit-learn's breast
cancer (212 malignant / 357 benign) and wine (59 / 71 / 48) tables, split 50/50 per class, the
minority class of the *training* half subsampled to 10% (at least 5 rows). Regions are the
classes. The generator stand-in (no tabular diffusion model here): a class-conditional Gaussian
on standardised features whose mean is the region's own mean and whose covariance is the
within-class covariance pooled over *all* training rows (shrunk 10% toward its diagonal): the
"pretrain on everything, fine-tune on the region" reading of the paper with the smallest model
that has it. Budget ``m = ratio * n``; arms at equal ``m``: real only, ``uniform``,
``proportional`` (to class frequency; the non-adaptive baselines) and CoDSA's targeted
``balance`` (top-up). Learner: scikit-learn's ``LogisticRegression``. Metrics on the untouched
test half: balanced accuracy and the minority's recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posneg.bench._report import fmt
from posneg.bench._synthetic_context import SyntheticContext
from posneg.synthetic.codsa import codsa_synthesize

__all__ = ["SECTIONS", "claims"]

DATASETS = ("breast_cancer", "wine")
RULES = ("uniform", "proportional", "balance")
RATIOS = {"default": (0.25, 1.0, 4.0), "demo": (1.0,)}
KEEP = 0.10


def _load(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    from sklearn.datasets import load_breast_cancer, load_wine

    data = load_breast_cancer() if name == "breast_cancer" else load_wine()
    y = data.target.astype(np.int64)
    return data.data.astype(np.float64), y, int(np.bincount(y).argmin())


def _split(y: np.ndarray, minority: int, g: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices: 50/50 per class, then the training minority cut to 10% (>= 5)."""
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[torch.randperm(len(idx), generator=g).numpy()]
        half = len(idx) // 2
        keep = max(5, round(KEEP * half)) if c == minority else half
        train.append(idx[:keep])
        test.append(idx[half:])
    return np.concatenate(train), np.concatenate(test)


def _gaussian_sampler(x: torch.Tensor, y: torch.Tensor, k: int) -> Any:
    """Per-region means, the pooled within-class covariance (10% diagonal shrinkage)."""
    means = torch.stack([x[y == c].mean(0) for c in range(k)])
    resid = x - means[y]
    cov = resid.T @ resid / max(len(x) - k, 1)
    cov = 0.9 * cov + 0.1 * torch.diag(torch.diagonal(cov)) + 1e-6 * torch.eye(x.shape[1])
    chol = torch.linalg.cholesky(cov)

    def sample(cond: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        z = torch.randn(len(cond), x.shape[1], generator=generator, dtype=x.dtype)
        return means[cond] + z @ chol.T

    return sample


def _scores(clf: Any, x: np.ndarray, y: np.ndarray, minority: int) -> tuple[float, float]:
    from sklearn.metrics import balanced_accuracy_score, recall_score

    pred = clf.predict(x)
    minority_recall = recall_score(y, pred, labels=[minority], average="macro", zero_division=0)
    return float(balanced_accuracy_score(y, pred)), float(minority_recall)


def _one(name: str, ratios: tuple[float, ...], g: torch.Generator) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    x, y, minority = _load(name)
    tr, te = _split(y, minority, g)
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-12
    xtr, xte = (x[tr] - mu) / sd, (x[te] - mu) / sd
    k = int(y.max()) + 1
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(y[tr])
    sample = _gaussian_sampler(xt, yt, k)

    def fit(xs: np.ndarray, ys: np.ndarray) -> Any:
        return LogisticRegression(max_iter=500, C=1.0).fit(xs, ys)

    out: dict[str, float] = {}
    out[f"{name}/real_only/bal_acc"], out[f"{name}/real_only/minority_recall"] = _scores(
        fit(xtr, y[tr]), xte, y[te], minority
    )
    for ratio in ratios:
        for rule in RULES:
            syn = codsa_synthesize(
                yt, sample, budget=int(ratio * len(tr)), rule=rule, num_regions=k, generator=g
            )
            xs = np.concatenate([xtr, syn.samples.numpy()])
            ys = np.concatenate([y[tr], syn.regions.numpy()])
            bal, rec = _scores(fit(xs, ys), xte, y[te], minority)
            out[f"{name}/r{ratio:g}_{rule}/bal_acc"] = bal
            out[f"{name}/r{ratio:g}_{rule}/minority_recall"] = rec
    return out


def codsa_section(ctx: SyntheticContext, g: torch.Generator) -> dict[str, Any]:
    """Balanced accuracy and minority recall per data set, budget ratio and allocation rule."""
    ratios = RATIOS[ctx.preset]
    out: dict[str, Any] = {}
    for name in DATASETS if ctx.preset != "demo" else DATASETS[:1]:
        out.update(_one(name, ratios, g))
    out["setting"] = (
        f"minority of the train half cut to {KEEP:.0%} (>= 5 rows); m/n in {list(ratios)}; "
        "generator stand-in: per-class Gaussian, pooled covariance; logistic regression"
    )
    return out


def claims(agg: dict[str, tuple[float, float]]) -> list[str]:
    """CoDSA's claim: at equal m, targeted (balance) > uniform >= real only (balanced accuracy)."""
    lines = []
    for name in DATASETS:
        base = agg.get(f"codsa/{name}/real_only/bal_acc")
        if base is None:
            continue
        ratios = sorted(
            {
                float(k.split("/")[2].split("_")[0][1:])
                for k in agg
                if k.startswith(f"codsa/{name}/r") and k.endswith("_balance/bal_acc")
            }
        )
        parts, wins = [], 0
        for r in ratios:
            t = agg[f"codsa/{name}/r{r:g}_balance/bal_acc"]
            u = agg[f"codsa/{name}/r{r:g}_uniform/bal_acc"]
            wins += t[0] > u[0]
            parts.append(f"m/n={r:g}: targeted {fmt(*t)} vs uniform {fmt(*u)}")
        verdict = (
            "as claimed" if wins == len(ratios) else f"as claimed at {wins}/{len(ratios)} budgets"
        )
        lines.append(
            f"CoDSA claim (targeted > uniform at equal budget, balanced accuracy), {name} "
            f"(real only {fmt(*base)}): " + "; ".join(parts) + f": {verdict}."
        )
    return lines


SECTIONS = {"codsa": codsa_section}
