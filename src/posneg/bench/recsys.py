"""`posneg bench recsys`: NBPO vs BPO/BPR under hidden positives, and CET's pooling-bias toy.

Task 1 (implicit feedback): no real interaction matrix is embedded in the installed packages, so
the matrix is **generated** (:func:`posneg.data.interactions.low_rank_interactions`: low-rank
truth, held-out and hidden positives) and labelled as generated in the report. Each variant of
:mod:`posneg.mining.strategies.nbpo` trains the code's matrix factorisation (summed batch
directions, 4 uniform unvoted items per positive, decay every batch, eta x0.99 per epoch);
F1@k and NDCG@k are computed as NBPO's ``Library.py`` does. Paper claim: NBPO beats BPR (and
BPO) when positives are hidden.

Task 2 (CET): :mod:`posneg.bench._recsys_cet`, the card's digits toy: weak vs strong negatives
vs strong + CET, MRR@10 and P@10. Card claim: strong < weak and strong + CET >= weak.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._recsys_cet import SETUPS, prepare, run_setup
from posneg.bench._recsys_mf import HYPER, train_eval
from posneg.data.interactions import low_rank_interactions

VARIANTS = tuple(HYPER)


@dataclass(frozen=True)
class BenchConfig:
    """Everything a recsys bench run depends on (recorded in results.json).

    Attributes:
        hidden: shares of training positives hidden (label noise), repeatable.
        variants: NBPO-family rules to compare (bpr, bpo, nbpo, nbpoo), repeatable.
        epochs: passes over the training positives per matrix-factorisation run.
        users, items, rank, density: size, rank and positive share of the generated matrix.
        dim: factor dimension (K0 = K1).
        batch_size: training positives per update (the code's 5000).
        k: cut-off of the headline F1/NDCG (k in 2, 5, 10, 20 are all recorded).
        cet_epochs: reranker epochs of the CET toy (0: skip the toy).
        pool: depth of the judgment pool and of the negative lists in the CET toy.
        cet_queries: training queries of the CET toy (two thirds as many held out).
        debias_ratio: CET's r (10.0 as the released script; argparse's default is 2.0).
        seeds: number of seeds (first_seed, first_seed + 1, ...).
        first_seed: the first seed.
        threads: CPU threads for torch (0: automatic, min(4, available cores); N: exactly N).
        out: output folder.
        quiet: no progress bars and no table.
    """

    hidden: tuple[float, ...] = (0.0, 0.5)
    variants: tuple[str, ...] = VARIANTS
    epochs: int = 40
    users: int = 300
    items: int = 500
    rank: int = 8
    density: float = 0.05
    dim: int = 50
    batch_size: int = 5000
    k: int = 10
    cet_epochs: int = 8
    pool: int = 20
    cet_queries: int = 300
    debias_ratio: float = 10.0
    seeds: int = 3
    first_seed: int = 0
    threads: int = 1
    out: str = "runs/recsys"
    quiet: bool = False


KS = (2, 5, 10, 20)


def _validate(cfg: BenchConfig) -> None:
    harness.check_common(cfg)
    for v in cfg.variants:
        if v not in VARIANTS:
            raise harness.UsageError(f"--variants: unknown {v!r}; choose from {VARIANTS}")
    for h in cfg.hidden:
        if not 0 <= h < 1:
            raise harness.UsageError(f"--hidden: each share must be in [0, 1); got {h}")
    if cfg.k not in KS:
        raise harness.UsageError(f"--k: must be one of {KS}; got {cfg.k}")
    for name in ("epochs", "users", "items", "rank", "dim", "batch_size", "pool", "cet_queries"):
        if getattr(cfg, name) < 1:
            raise harness.UsageError(f"--{name.replace('_', '-')}: must be >= 1")
    if cfg.cet_epochs < 0 or cfg.debias_ratio <= 0 or not 0 < cfg.density < 1:
        raise harness.UsageError("--cet-epochs >= 0, --debias-ratio > 0, --density in (0, 1)")


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run both tasks; write results.json, results.md and the plot; return the results."""
    _validate(cfg)
    seeds = harness.seed_list(cfg)
    device = torch.device("cpu")
    started = time.perf_counter()
    with harness.torch_threads(cfg.threads, device) as threads:
        jobs = [(h, v, s) for h in cfg.hidden for v in cfg.variants for s in seeds]

        def one_mf(job: tuple[float, str, int], tick: Any) -> dict[str, Any]:
            h, v, s = job
            data = low_rank_interactions(
                n_users=cfg.users,
                n_items=cfg.items,
                rank=cfg.rank,
                density=cfg.density,
                hidden=h,
                seed=s,
            )
            m = train_eval(
                data,
                v,
                seed=s,
                epochs=cfg.epochs,
                dim=cfg.dim,
                batch_size=cfg.batch_size,
                n_neg=4,
                ks=KS,
                step=tick,
            )
            row: dict[str, Any] = {"task": "mf", "hidden": h, "variant": v, "seed": s}
            for k, (f1, ndcg) in m.items():
                row[f"f1@{k}"], row[f"ndcg@{k}"] = f1, ndcg
            return row

        mf_runs = harness.run_grid(
            jobs,
            one_mf,
            describe=lambda j: f"{j[1]} hidden={j[0]} seed={j[2]}",
            steps=cfg.epochs,
            quiet=cfg.quiet,
        )
        cet_runs: list[dict[str, Any]] = []
        if cfg.cet_epochs:
            cache: dict[int, dict] = {}

            def one_cet(job: tuple[str, int], tick: Any) -> dict[str, Any]:
                setup, s = job
                if s not in cache:
                    cache[s] = prepare(
                        cfg.pool, cfg.cet_queries, max(1, 2 * cfg.cet_queries // 3), s
                    )
                with harness.seeded(device, s):
                    mrr, p10 = run_setup(
                        cache[s],
                        setup,
                        seed=s,
                        epochs=cfg.cet_epochs,
                        debias_ratio=cfg.debias_ratio,
                        step=tick,
                    )
                fn_share = cache[s]["false_negative_share"]
                return {"setup": setup, "seed": s, "mrr@10": mrr, "p@10": p10, "fn": fn_share}

            cet_runs = harness.run_grid(
                [(st, s) for st in SETUPS for s in seeds],
                one_cet,
                describe=lambda j: f"cet toy {j[0]} seed={j[1]}",
                steps=cfg.cet_epochs,
                quiet=cfg.quiet,
            )
    elapsed = time.perf_counter() - started
    k = cfg.k
    mf_agg = _report.aggregate(
        mf_runs,
        by=("hidden", "variant"),
        metrics=[f"{m}@{kk}" for m in ("f1", "ndcg") for kk in KS],
    )
    cet_agg = _report.aggregate(cet_runs, by=("setup",), metrics=("mrr@10", "p@10", "fn"))
    header = ["task / setting", "method", f"F1@{k} or MRR@10", f"NDCG@{k} or P@10", "seeds"]
    rows: list[list[Any]] = []
    for a in mf_agg:
        f1 = _report.fmt(a[f"f1@{k}_mean"], a[f"f1@{k}_std"])
        nd = _report.fmt(a[f"ndcg@{k}_mean"], a[f"ndcg@{k}_std"])
        rows.append([f"MF hidden={a['hidden']}", a["variant"], f1, nd, len(a["seeds"])])
    for a in cet_agg:
        mrr = _report.fmt(a["mrr@10_mean"], a["mrr@10_std"])
        p = _report.fmt(a["p@10_mean"], a["p@10_std"])
        rows.append(["CET digits toy", a["setup"], mrr, p, len(a["seeds"])])
    notes = _notes(cfg, seeds, mf_agg, cet_agg)
    config = _report.resolved_config(
        cfg, seeds=seeds, device=device, threads=threads, elapsed_seconds=round(elapsed, 1)
    )
    results = {"mf_runs": mf_runs, "mf_aggregate": mf_agg, "cet_runs": cet_runs}
    results["cet_aggregate"] = cet_agg
    return _report.publish(
        cfg.out,
        title="posneg bench recsys",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: [_plot(out, mf_agg, cet_agg, k)],
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


def _claim(agg: list[dict[str, Any]], key: str, a: str, b: str, field: str) -> str:
    va = {r[field]: r[f"{key}_mean"] for r in agg}
    if a not in va or b not in va:
        return "n/a"
    return "holds" if va[a] > va[b] else "does not hold"


def _notes(cfg: BenchConfig, seeds: list[int], mf: list[dict], cet: list[dict]) -> list[str]:
    k = cfg.k
    lines = [
        f"Setup: GENERATED implicit feedback ({cfg.users} users x {cfg.items} items, rank "
        f"{cfg.rank}, {cfg.density:.0%} true positives per user, 20% held out, a share of the "
        f"rest hidden from training); {cfg.epochs} epochs; seeds {seeds}. CET toy: digits, "
        f"pool = pixel top-{cfg.pool}, strong = LDA top-{cfg.pool}, r = {cfg.debias_ratio}.",
        "Data: the interaction matrix is generated (no real one is embedded).",
    ]
    for h in cfg.hidden:
        rows = [r for r in mf if r["hidden"] == h]
        lines.append(
            f"Claim NBPO > BPR (NDCG@{k}, hidden={h}): "
            f"{_claim(rows, f'ndcg@{k}', 'nbpo', 'bpr', 'variant')}; "
            f"NBPO > BPO: {_claim(rows, f'ndcg@{k}', 'nbpo', 'bpo', 'variant')}."
        )
    if cet:
        lines.append(
            "CET claims (MRR@10): strong < weak "
            f"{_claim(cet, 'mrr@10', 'weak', 'strong', 'setup')}; strong+cet >= weak "
            f"{'holds' if _ge(cet, 'strong+cet', 'weak') else 'does not hold'}; "
            f"false-negative share of strong negatives {cet[0]['fn_mean']:.2f}."
        )
    return lines


def _ge(agg: list[dict[str, Any]], a: str, b: str) -> bool:
    va = {r["setup"]: r["mrr@10_mean"] for r in agg}
    return a in va and b in va and va[a] >= va[b]


def _plot(out: Path, mf: list[dict], cet: list[dict], k: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    hs = sorted({r["hidden"] for r in mf})
    for v in sorted({r["variant"] for r in mf}):
        rows = sorted((r for r in mf if r["variant"] == v), key=lambda r: r["hidden"])
        axes[0].errorbar(
            hs, [r[f"ndcg@{k}_mean"] for r in rows], [r[f"ndcg@{k}_std"] for r in rows], label=v
        )
    axes[0].set(xlabel="hidden share", ylabel=f"NDCG@{k}", title="generated implicit feedback")
    axes[0].legend()
    if cet:
        names = [r["setup"] for r in cet]
        axes[1].bar(names, [r["mrr@10_mean"] for r in cet], yerr=[r["mrr@10_std"] for r in cet])
        axes[1].set(ylabel="MRR@10", title="CET pooling-bias toy (digits)")
    return _report.save_figure(fig, out / "recsys.png")


#: `posneg bench recsys`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""NBPO vs BPO/BPR on generated implicit feedback, and CET's pooling-bias toy on digits.

    Writes results.json, results.md and recsys.png into --out.
    """,
    flags={"hidden": ("--hidden",), "variants": ("--variant",)},
)

#: The demo preset: one seed, a small matrix, few epochs.
DEMO_CONFIG = BenchConfig(
    hidden=(0.5,),
    variants=("bpr", "nbpo"),
    epochs=5,
    users=60,
    items=100,
    cet_epochs=2,
    cet_queries=60,
    seeds=1,
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: BPR vs NBPO, and the CET toy, one seed."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out), "quiet": True}))
    rows = [(a["variant"], "NDCG@10", f"{a['ndcg@10_mean']:.3f}") for a in result["mf_aggregate"]]
    rows += [
        (f"cet toy {a['setup']}", "MRR@10", f"{a['mrr@10_mean']:.3f}")
        for a in result["cet_aggregate"]
    ]
    return _report.DemoSummary(family="recsys", rows=rows, report=Path(result["report"]))
