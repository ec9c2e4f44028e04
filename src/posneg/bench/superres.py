"""`posneg bench superres`: x2 super-resolution with and without the PCL-SR contrastive term.

Wu, Jiang, Liu, *A Practical Contrastive Learning Framework for Single-Image Super-Resolution*
(IEEE TNNLS 2023, arXiv 2111.13924) fine-tunes pretrained SR networks with
``L1 + w * L_CL`` and reports +0.0..0.25 dB. Here, per seed, a ~48k-parameter residual CNN
(:class:`~posneg.bench._superres_data.SmallSR`) is pretrained with L1 on 32x32 crops of the
bundled photographs (:mod:`posneg.bench._superres_data`), then fine-tuned for the same number of
steps, from the same weights and on the same batches, by each method:

- ``l1``: L1 only;
- ``pcl``: ``L1 + w * pcl_sr_loss`` with the gradient through the SR features (the paper);
- ``pcl_parity``: the same with ``detach_sr_features=True`` (the released code, whose SR
  features are computed under ``no_grad``: the generator sees L1 only).

For both PCL methods the embedding network (:class:`~posneg.losses.pcl_sr.PCLSREmbedding`,
narrow: width ``embed_width``, depth 6, ``cl_layer`` 4, patch grid 2) is trained each step with the
dual contrastive loss (``CL-patchD``: real = sharpened copies + HR, fake = blurred copies + the
detached SR), then the generator step uses it (training-mode BN, as released). Positives and
negatives come from :class:`~posneg.losses.pcl_sr.PCLSRViews` (M = 3) with their own generator,
so the batches are identical across methods. Held-out crops of held-out images are scored:
PSNR and SSIM on luma (2-pixel border shaved) and the Haar HH / high-pass L1 error.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._superres_data import SmallSR, SRData, load_crops, metrics
from posneg.losses.pcl_sr import (
    PCLSRDualContrastiveLoss,
    PCLSREmbedding,
    PCLSRLoss,
    PCLSRViews,
)

__all__ = ["DEMO_CONFIG", "METHODS", "BenchConfig", "cli", "demo", "run"]

#: The methods `--method` accepts, in table order.
METHODS: tuple[str, ...] = ("l1", "pcl", "pcl_parity")
METRICS: tuple[str, ...] = ("psnr", "ssim", "hh_error", "hf_error")
MODEL = "SmallSR: conv32, 2 residual blocks, conv, conv->4 + pixel shuffle x2, bicubic skip"


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        methods: ``l1``, ``pcl`` (with gradient, the paper), ``pcl_parity`` (released code).
        weight: w of ``L1 + w * L_CL`` on [0, 1] images. Default 5/255: the released RCAN
            script's ``1*L1+5*CL-patchD`` at ``--rgb_range 255`` (L_CL is invariant to the
            intensity scale, L1 is not). The released NLSN script uses w = 3 at rgb_range 1.
        pretrain_steps: L1 steps before fine-tuning (shared by the methods of a seed).
        steps: fine-tuning steps per method.
        batch_size: crops per step.
        lr: Adam learning rate of pretraining.
        finetune_lr: Adam learning rate of fine-tuning (SR net and embedding network).
        embed_width: width of the embedding network's first block (64 in the paper; 8 here
            keeps the default preset within minutes on 2 CPU cores).
        train_crops: 32x32 training crops drawn from the training images.
        test_crops: held-out crops drawn from the held-out images.
        seeds: number of training seeds.
        first_seed: the first training seed.
        device: ``auto``, ``cpu``, ``cuda``.
        threads: CPU threads for torch.
        out: output folder.
        quiet: no progress bars and no table.
    """

    methods: tuple[str, ...] = METHODS
    weight: float = 5.0 / 255.0
    pretrain_steps: int = 200
    steps: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    finetune_lr: float = 5e-5
    embed_width: int = 8
    train_crops: int = 2048
    test_crops: int = 256
    seeds: int = 3
    first_seed: int = 0
    device: str = "auto"
    threads: int = 1
    out: str = "runs/superres"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> None:
    for m in cfg.methods:
        if m not in METHODS:
            raise harness.UsageError(f"--method: unknown method {m!r}; known: {', '.join(METHODS)}")
    if not cfg.methods:
        raise harness.UsageError("--method: give at least one method")
    harness.check_common(cfg)
    harness.check_number("--weight", cfg.weight, low=0.0)
    harness.check_number("--pretrain-steps", cfg.pretrain_steps, low=0)
    harness.check_number("--steps", cfg.steps, low=1)
    harness.check_number("--batch-size", cfg.batch_size, low=2)
    harness.check_number("--lr", cfg.lr, low=0.0, closed="none")
    harness.check_number("--finetune-lr", cfg.finetune_lr, low=0.0, closed="none")
    harness.check_number("--train-crops", cfg.train_crops, low=cfg.batch_size)
    harness.check_number("--test-crops", cfg.test_crops, low=1)
    harness.check_number("--embed-width", cfg.embed_width, low=1)


def _batches(n: int, bs: int, steps: int, seed: int, device: torch.device) -> torch.Tensor:
    """(steps, bs) crop indices from a generator of its own (identical across methods)."""
    g = torch.Generator().manual_seed(seed)
    per = n // bs
    rows = [
        torch.randperm(n, generator=g)[: per * bs].view(per, bs) for _ in range(steps // per + 1)
    ]
    return torch.cat(rows)[:steps].to(device)


def _pretrain(data: SRData, seed: int, cfg: BenchConfig, device: torch.device) -> SmallSR:
    with harness.seeded(device, seed):
        model = SmallSR().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    hr, lr = data.hr_train.to(device), data.lr_train.to(device)
    for idx in _batches(hr.shape[0], cfg.batch_size, cfg.pretrain_steps, seed, device):
        loss = F.l1_loss(model(lr[idx]), hr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


def _finetune(
    method: str,
    base: SmallSR,
    data: SRData,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
    tick: Callable[[], None],
) -> dict[str, Any]:
    model = copy.deepcopy(base)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.finetune_lr)
    use_cl = method != "l1"
    with harness.seeded(device, seed + 7919):
        embed = PCLSREmbedding(1, width=cfg.embed_width, depth=6, cl_layer=4, patch_grid=2)
        embed = embed.to(device)
    d_opt = torch.optim.Adam(embed.parameters(), lr=cfg.finetune_lr)
    cl = PCLSRLoss(detach_sr_features=method == "pcl_parity")
    dual = PCLSRDualContrastiveLoss()
    views = PCLSRViews(3)
    g_views = torch.Generator().manual_seed(seed + 104729)
    hr_all, lr_all = data.hr_train.to(device), data.lr_train.to(device)
    order = _batches(hr_all.shape[0], cfg.batch_size, cfg.steps, seed + 1, device)
    start = time.perf_counter()
    l1_sum, cl_sum, d_sum = 0.0, 0.0, 0.0
    for step, idx in enumerate(order):
        hr, lr = hr_all[idx], lr_all[idx]
        sr = model(lr)
        loss = F.l1_loss(sr, hr)
        l1_sum += float(loss.detach())
        if use_cl:
            v = views(hr, lr, generator=g_views)
            # D step (CL-patchD): real = sharpened copies + HR, fake = blurred copies + SR
            real = torch.stack([embed.patch_logits(p) for p in (*v.positives[1:], hr)])
            fake = torch.stack([embed.patch_logits(n) for n in (*v.negatives[1:], sr.detach())])
            d_loss = dual(real, fake)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            d_sum += float(d_loss.detach())
            cl_loss = cl(sr, v.positives, v.negatives, embed=embed)
            cl_sum += float(cl_loss.detach())
            loss = loss + cfg.weight * cl_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % max(1, cfg.steps // 20) == 0:
            tick()
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        sr_test = torch.cat([model(x) for x in data.lr_test.to(device).split(256)])
    n = len(order)
    return {
        "method": method,
        "seed": seed,
        **metrics(sr_test, data.hr_test),
        "train_l1": l1_sum / n,
        "train_cl": cl_sum / n if use_cl else None,
        "train_d": d_sum / n if use_cl else None,
        "steps": n,
        "train_seconds": round(train_s, 2),
    }


def _plot(out: Path, agg: list[dict[str, Any]], bicubic: dict[str, float]) -> Path:
    from matplotlib.figure import Figure

    panels = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("hh_error", "HH L1 error x1000"))
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, len(panels))
    names = [a["method"] for a in agg]
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.errorbar(
            range(len(agg)),
            [a[f"{key}_mean"] for a in agg],
            yerr=[a[f"{key}_std"] for a in agg],
            fmt="o",
            capsize=4,
        )
        ax.axhline(bicubic[key], color="grey", ls="--", lw=1, label="bicubic")
        ax.set_xticks(range(len(agg)), names)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("x2 SR on held-out crops, mean ± std over seeds")
    return _report.save_figure(fig, out / "superres.png")


def _gaps(runs: list[dict[str, Any]], methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per-seed differences method - l1 of every metric: mean, std, wins."""
    base = {r["seed"]: r for r in runs if r["method"] == "l1"}
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        if m == "l1" or not base:
            continue
        mine = [r for r in runs if r["method"] == m and r["seed"] in base]
        entry: dict[str, Any] = {}
        for k in METRICS:
            diffs = [r[k] - base[r["seed"]][k] for r in mine]
            mean, sd = _report.mean_std(diffs)
            entry[k] = {"mean": mean, "std": sd, "diffs": diffs}
        out[m] = entry
    return out


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs", "aggregate", "gaps", "bicubic", "report", "plots", "config"}``.
    """
    _validate(cfg)
    device = harness.resolve_device(cfg.device)
    seeds = harness.seed_list(cfg)
    started = time.perf_counter()
    with harness.torch_threads(cfg.threads, device) as threads:
        try:
            data = load_crops(cfg.train_crops, cfg.test_crops)
        except FileNotFoundError as exc:  # scikit-learn or scikit-image not installed
            raise harness.UsageError(str(exc)) from None
        up = F.interpolate(data.lr_test, scale_factor=2, mode="bicubic", align_corners=False)
        bicubic = metrics(up, data.hr_test)
        bases: dict[int, SmallSR] = {}

        def one(job: tuple[int, str], tick: Callable[[], None]) -> dict[str, Any]:
            seed, method = job
            if seed not in bases:
                bases.clear()
                bases[seed] = _pretrain(data, seed, cfg, device)
            return _finetune(method, bases[seed], data, seed, cfg, device, tick)

        runs = harness.run_grid(
            [(s, m) for s in seeds for m in cfg.methods],
            one,
            describe=lambda job: f"{job[1]} seed={job[0]}",
            steps=20,
            quiet=cfg.quiet,
        )
    elapsed = time.perf_counter() - started
    agg = _report.aggregate(runs, by=("method",), metrics=METRICS, means=("train_seconds",))
    gaps = _gaps(runs, cfg.methods)
    header = ["method", "PSNR (dB)", "SSIM", "HH err x1e3", "HF err x1e3", "ΔPSNR vs l1"]
    b = bicubic
    rows: list[list[Any]] = [
        ["bicubic", f"{b['psnr']:.3f}", f"{b['ssim']:.4f}", f"{b['hh_error']:.3f}"],
    ]
    rows[0] += [f"{b['hf_error']:.3f}", ""]
    for a in agg:
        g = gaps.get(a["method"], {}).get("psnr")
        rows.append(
            [
                a["method"],
                _report.fmt(a["psnr_mean"], a["psnr_std"]),
                _report.fmt(a["ssim_mean"], a["ssim_std"], digits=4),
                _report.fmt(a["hh_error_mean"], a["hh_error_std"]),
                _report.fmt(a["hf_error_mean"], a["hf_error_std"]),
                f"{g['mean']:+.3f} ± {g['std']:.3f}" if g else "",
            ]
        )
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        **data.summary(),
        model=MODEL,
        elapsed_seconds=round(elapsed, 1),
    )
    notes = [
        f"Setup: {MODEL}; L1 pretraining {cfg.pretrain_steps} steps, then {cfg.steps} "
        f"fine-tuning steps per method (same weights, same batches); w = {cfg.weight}; "
        f"{len(seeds)} seed(s) {seeds}; luma PSNR/SSIM on {data.hr_test.shape[0]} held-out crops.",
        "Claim (PCL-SR, TNNLS 2023): L1 + PCL >= L1 by a small PSNR margin, with lower "
        "high-frequency error. ΔPSNR: per-seed paired difference to l1.",
        "pcl_parity is the released code (no gradient from L_CL to the SR net): it must equal l1.",
    ]
    results = {"runs": runs, "aggregate": agg, "gaps": gaps, "bicubic": bicubic}
    return _report.publish(
        cfg.out,
        title="posneg bench superres",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: [_plot(out, agg, bicubic)],
        quiet=cfg.quiet,
        elapsed=elapsed,
    )


#: `posneg bench superres`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""x2 super-resolution: L1 vs L1 + PCL-SR contrastive loss (paper and released-code modes).

    Per seed a ~48k-parameter CNN is pretrained with L1 on crops of the bundled photographs, then
    fine-tuned equally long by each method; held-out crops of held-out images are scored (luma
    PSNR, SSIM, Haar high-frequency error). Writes results.json, results.md and a PNG plot.
    """,
    flags={"methods": ("--method", "-m"), "batch_size": ("--batch-size", "-b")},
)

#: The demo preset: one seed, few steps (a few seconds).
DEMO_CONFIG = BenchConfig(
    pretrain_steps=10, steps=5, train_crops=64, test_crops=16, seeds=1, batch_size=8
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: the three methods, one seed, a few steps."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)}))
    rows = [
        (a["method"], "PSNR (dB) / HH err x1e3", f"{a['psnr_mean']:.2f} / {a['hh_error_mean']:.2f}")
        for a in result["aggregate"]
    ]
    return _report.DemoSummary(family="superres", rows=rows, report=Path(result["report"]))
