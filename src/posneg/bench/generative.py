"""`posneg bench generative`: generation steered away from negatives, on a stand-in digit DDPM.

One stand-in class-conditional DDPM (:mod:`posneg.bench._ddpm`: a small U-Net with the diffusers
``UNet2DModel`` signature and a diffusers self-attention layer, trained on the 8x8 digits with
label dropout for classifier-free guidance, seeded, cached) and one digit classifier as the
judge (:mod:`posneg.bench._judge`) serve every section. Sections come from the modules
``posneg.bench._generative_<part>`` listed in :data:`PARTS` (absent ones are skipped); each
exports ``SECTIONS: dict[name, section(ctx, generator) -> metrics]`` and optionally
``claims(aggregate) -> list[str]``. A section runs once per seed (the seed drives its sampling
noise and its own training); the DDPM and the judge are trained once (seed 0) and shared.
Sections: Perp-Neg, NegToMe (same-class diversity), ANT, augmented conditioning, Adapt-then-Unlearn.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._ddpm import DDPMConfig, make_scheduler, pretrained_ddpm
from posneg.bench._generative_context import GenerativeContext
from posneg.bench._judge import digit_split, train_judge
from posneg.bench._terminal import progress_bar

#: The section modules, in report order (absent ones are skipped).
PARTS: tuple[str, ...] = (
    "_generative_perpneg",
    "_generative_negtome",
    "_generative_ant",
    "_generative_augcond",
    "_generative_unlearn",
)


@dataclass(frozen=True)
class BenchConfig:
    """Everything a generative bench run depends on (recorded in results.json).

    Attributes:
        sections: section names to run (empty: all found), repeatable.
        preset: ``default`` or ``demo`` (sections shrink their work for ``demo``).
        ddpm_steps: training steps of the stand-in DDPM (0: untrained, for smoke tests).
        samples: images per sampled configuration (0: the section's default).
        sample_steps: DDIM steps per sample.
        seeds: number of seeds (first_seed, first_seed + 1, ...).
        first_seed: the first seed.
        threads: CPU threads for torch (default 1; 0: automatic, min(4, available cores); N:
            exactly N). One by default: the stand-ins are tiny, so a second thread mostly waits
            for a core; on the shared 2-core machine the Perp-Neg section alone took 87 s of CPU
            with 2 threads and 17 s with 1 (load about 6).
        out: output folder.
        quiet: no progress bars and no table.
    """

    sections: tuple[str, ...] = ()
    preset: str = "default"
    ddpm_steps: int = DDPMConfig().steps
    samples: int = 0
    sample_steps: int = 20
    seeds: int = 3
    first_seed: int = 0
    threads: int = 1
    out: str = "bench-out/generative"
    quiet: bool = False


def _modules() -> list[Any]:
    return harness.present_modules(PARTS)


def _check(cfg: BenchConfig, names: list[str]) -> None:
    harness.check_number("--ddpm-steps", cfg.ddpm_steps, low=0)
    harness.check_number("--samples", cfg.samples, low=0)
    harness.check_number("--sample-steps", cfg.sample_steps, low=1)
    harness.check_number("--seeds", cfg.seeds, low=1)
    if cfg.preset not in ("default", "demo"):
        raise harness.UsageError(f"--preset must be default or demo; got {cfg.preset!r}")
    harness.check_known("--section", cfg.sections, names, label="available")


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench; returns the results with the report's path (see :func:`_report.publish`)."""
    start = time.time()
    modules = _modules()
    table = {name: (m, fn) for m in modules for name, fn in m.SECTIONS.items()}
    _check(cfg, list(table))
    chosen = [s for s in table if not cfg.sections or s in cfg.sections]
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    device = torch.device("cpu")
    runs: list[dict[str, Any]] = []
    details: dict[str, str] = {}
    images: dict[str, torch.Tensor] = {}
    grid_rows: dict[str, int] = {}
    with (
        harness.torch_threads(cfg.threads, device) as threads,
        progress_bar(disable=cfg.quiet) as bar,
    ):
        tx, ty, vx, vy = digit_split()
        t0 = time.time()
        judge = train_judge(tx, ty, epochs=1 if cfg.preset == "demo" else 8)
        judge_acc = float((judge(vx).argmax(1) == vy).float().mean())
        task = bar.add_task("stand-in DDPM", total=max(cfg.ddpm_steps, 1))
        ddpm_cfg = DDPMConfig(steps=cfg.ddpm_steps)
        ddpm, cached = pretrained_ddpm(
            tx,
            ty,
            ddpm_cfg,
            cache=cfg.ddpm_steps > 0,
            progress=lambda i, n: bar.update(task, completed=i),
        )
        bar.update(task, completed=max(cfg.ddpm_steps, 1))
        setup_seconds = time.time() - t0
        for p in ddpm.parameters():
            p.requires_grad_(False)
        task = bar.add_task("sections", total=len(seeds) * len(chosen))
        for seed in seeds:
            extra: dict[str, object] = {"samples": cfg.samples} if cfg.samples else {}
            ctx = GenerativeContext(
                train_x=tx,
                train_y=ty,
                test_x=vx,
                test_y=vy,
                judge=judge,
                ddpm=ddpm,
                scheduler=make_scheduler(ddpm_cfg.num_train_timesteps),
                make_unet=lambda: pretrained_ddpm(tx, ty, DDPMConfig(steps=0), cache=False)[0],
                sample_steps=cfg.sample_steps,
                preset=cfg.preset,
                seed=seed,
                device=device,
                out=Path(cfg.out),
                extra=extra,
            )
            for name in chosen:
                gen = torch.Generator().manual_seed(seed)
                with harness.seeded(device, seed):
                    metrics = dict(table[name][1](ctx, gen))
                img = metrics.pop("_images", None)
                n_rows = int(metrics.pop("_grid_rows", 1))
                if img is not None and name not in images:
                    images[name], grid_rows[name] = img, n_rows
                for key, value in metrics.items():
                    if isinstance(value, str):  # a description (intervals, settings), not a metric
                        details.setdefault(f"{name}/{key}", value)
                        continue
                    runs.append(
                        {
                            "section": name,
                            "metric": f"{name}/{key}",
                            "seed": seed,
                            "value": float(value),
                        }
                    )
                bar.advance(task)
    agg = _aggregate(runs)
    elapsed = time.time() - start
    header = ["metric", "mean ± std", "seeds"]
    rows = [[m, _report.fmt(*agg[m]), len(seeds)] for m in agg]
    notes = [
        f"Setup: 8x8 digits (sklearn), judge CNN (test accuracy {judge_acc:.3f}); stand-in DDPM "
        f"{ddpm_cfg.steps} steps ({'loaded from cache' if cached else 'trained'}), DDIM "
        f"{cfg.sample_steps} steps; seeds {seeds}; setup {setup_seconds:.0f} s.",
    ]
    notes += [f"{key} (first seed): {text}" for key, text in details.items()]
    if cfg.ddpm_steps == 0:
        notes.append("The DDPM is UNTRAINED (--ddpm-steps 0): the numbers test the plumbing only.")
    for m in modules:
        if hasattr(m, "claims"):
            notes += m.claims(agg)
    config = _report.resolved_config(
        cfg, seeds=seeds, device=device, threads=threads, elapsed_seconds=round(elapsed, 1)
    )
    results = {"runs": runs, "aggregate": {k: list(v) for k, v in agg.items()}}
    results["sections"] = chosen
    return _report.publish(
        cfg.out,
        title="posneg bench generative",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: [_grid(out, images, grid_rows)],
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    metrics = list(dict.fromkeys(r["metric"] for r in runs))
    return {m: _report.mean_std([r["value"] for r in runs if r["metric"] == m]) for m in metrics}


def _grid(out: Path, images: dict[str, torch.Tensor], grid_rows: dict[str, int]) -> Path:
    """One panel per section: its first seed's samples, ``grid_rows`` rows."""
    from matplotlib.figure import Figure

    names = list(images) or ["(none)"]
    fig = Figure(figsize=(4 * len(names), 4))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        ax.axis("off")
        if name not in images:
            continue
        x = images[name][:, 0].clamp(-1, 1)
        r = max(grid_rows[name], 1)
        c = -(-len(x) // r)
        pad = torch.full((r * c - len(x), 8, 8), -1.0)
        tiles = torch.cat([x, pad]).reshape(r, c, 8, 8).permute(0, 2, 1, 3).reshape(r * 8, c * 8)
        ax.imshow(tiles.numpy(), cmap="gray", vmin=-1, vmax=1)
        ax.set_title(name)
    return _report.save_figure(fig, out / "generative_samples.png")


#: `posneg bench generative`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""Perp-Neg, NegToMe and the other generative sections on a stand-in digit DDPM and GAN.

    Writes results.json, results.md and generative_samples.png into --out.
    """,
    flags={"sections": ("--section",)},
)

#: The demo preset: an UNTRAINED DDPM, few samples and steps, one seed (plumbing only).
DEMO_CONFIG = BenchConfig(
    sections=("perp_neg",), preset="demo", ddpm_steps=0, samples=4, sample_steps=3, seeds=1
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: Perp-Neg on an untrained stand-in (plumbing only)."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out), "quiet": True}))
    agg = result["aggregate"]
    rows = [(k, "P", f"{v[0]:.3f}") for k, v in list(agg.items())[:4]]
    return _report.DemoSummary(family="generative", rows=rows, report=Path(result["report"]))
