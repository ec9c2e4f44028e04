"""`posneg bench synthetic`: generated data as positives, from the generator to the training set.

One stand-in class-conditional DDPM (the cached digit DDPM of `posneg bench generative`,
:mod:`posneg.bench._ddpm`, sampled with DDIM and classifier-free guidance through
:class:`posneg.bench._synthetic_context.DigitSampler`) and one digit CNN as the judge serve the
image sections; tabular sections (CoDSA) fit their own stand-in generators. Sections come from
the modules ``posneg.bench._synthetic_<part>`` listed in :data:`PARTS` (absent ones are
skipped); each exports ``SECTIONS: dict[name, section(ctx, generator) -> metrics]`` and
optionally ``claims(aggregate) -> list[str]``. A section runs once per seed; the DDPM and the
judge are trained once (seed 0) and shared. The report holds every metric as mean ± std over
seeds, each paper's claim whichever way it came out, and a grid of the sections' samples.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._ddpm import DDPMConfig
from posneg.bench._synthetic_context import make_context
from posneg.bench._terminal import progress_bar

#: The section modules, in report order (absent ones are skipped).
PARTS: tuple[str, ...] = (
    "_synthetic_mixing",
    "_synthetic_codsa",
    "_synthetic_ffr",
    "_synthetic_leaving",
    "_synthetic_aspire",
    "_synthetic_cdvg",
    "_synthetic_echogains",
    "_synthetic_mhergan",
)


@dataclass(frozen=True)
class BenchConfig:
    """Everything a synthetic bench run depends on (recorded in results.json).

    Attributes:
        sections: section names to run (empty: all found), repeatable.
        preset: ``default`` or ``demo`` (sections shrink their work for ``demo``).
        ddpm_steps: training steps of the stand-in DDPM (0: untrained, for smoke tests).
        judge_epochs: training epochs of the judge CNN.
        samples: synthetic images per section (0: the section's default).
        sample_steps: DDIM steps per sample.
        seeds: number of seeds (first_seed, first_seed + 1, ...).
        first_seed: the first seed.
        threads: CPU threads for torch (default 1; 0: automatic, min(4, available cores); N:
            exactly N). One by default: the stand-ins are tiny, so a second thread mostly waits
            for a core (as in `posneg bench generative`).
        out: output folder.
        quiet: no progress bars and no table.
    """

    sections: tuple[str, ...] = ()
    preset: str = "default"
    ddpm_steps: int = DDPMConfig().steps
    judge_epochs: int = 8
    samples: int = 0
    sample_steps: int = 20
    seeds: int = 3
    first_seed: int = 0
    threads: int = 1
    out: str = "bench-out/synthetic"
    quiet: bool = False


def _modules() -> list[Any]:
    return harness.present_modules(PARTS)


def _check(cfg: BenchConfig, names: list[str]) -> None:
    harness.check_number("--ddpm-steps", cfg.ddpm_steps, low=0)
    harness.check_number("--judge-epochs", cfg.judge_epochs, low=1)
    harness.check_number("--samples", cfg.samples, low=0)
    harness.check_number("--sample-steps", cfg.sample_steps, low=1)
    harness.check_common(cfg)
    if cfg.preset not in ("default", "demo"):
        raise harness.UsageError(f"--preset must be default or demo; got {cfg.preset!r}")
    harness.check_known("--section", cfg.sections, names, label="available")


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench; returns the results with the report's path (see :func:`_report.publish`)."""
    start = time.time()
    modules = _modules()
    table = {name: fn for m in modules for name, fn in m.SECTIONS.items()}
    _check(cfg, list(table))
    chosen = [s for s in table if not cfg.sections or s in cfg.sections]
    seeds = harness.seed_list(cfg)
    device = torch.device("cpu")
    runs: list[dict[str, Any]] = []
    details: dict[str, str] = {}
    images: dict[str, torch.Tensor] = {}
    grid_rows: dict[str, int] = {}
    seconds: dict[str, float] = {}
    with (
        harness.torch_threads(cfg.threads, device) as threads,
        progress_bar(disable=cfg.quiet) as bar,
    ):
        t0 = time.time()
        task = bar.add_task("stand-in DDPM + judge", total=max(cfg.ddpm_steps, 1))
        base = make_context(
            preset=cfg.preset,
            ddpm_steps=cfg.ddpm_steps,
            judge_epochs=cfg.judge_epochs,
            sample_steps=cfg.sample_steps,
            out=Path(cfg.out),
            extra={"samples": cfg.samples},
            progress=lambda i, n: bar.update(task, completed=i),
        )
        bar.update(task, completed=max(cfg.ddpm_steps, 1))
        judge_acc = float((base.judge(base.test_x).argmax(1) == base.test_y).float().mean())
        setup_seconds = time.time() - t0
        task = bar.add_task("sections", total=len(seeds) * len(chosen))
        for seed in seeds:
            ctx = dataclasses.replace(base, seed=seed)
            for name in chosen:
                bar.update(task, description=f"{name} seed={seed}")
                gen = torch.Generator().manual_seed(seed)
                t1 = time.time()
                with harness.seeded(device, seed):
                    metrics = dict(table[name](ctx, gen))
                seconds[name] = seconds.get(name, 0.0) + time.time() - t1
                img = metrics.pop("_images", None)
                n_rows = int(metrics.pop("_grid_rows", 1))
                if img is not None and name not in images:
                    images[name], grid_rows[name] = img.detach().cpu(), n_rows
                for key, value in metrics.items():
                    if isinstance(value, str):  # a description (settings), not a metric
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
        f"{cfg.ddpm_steps} steps, DDIM {cfg.sample_steps} steps, guidance "
        f"{base.sampler.guidance}; seeds {seeds}; setup {setup_seconds:.0f} s; section seconds "
        + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        + ".",
    ]
    notes += [f"{key} (first seed): {text}" for key, text in details.items()]
    if cfg.ddpm_steps == 0:
        notes.append(
            "The DDPM is UNTRAINED (--ddpm-steps 0): image numbers test the plumbing only."
        )
    for m in modules:
        if hasattr(m, "claims"):
            notes += m.claims(agg)
    config = _report.resolved_config(
        cfg, seeds=seeds, device=device, threads=threads, elapsed_seconds=round(elapsed, 1)
    )
    results: dict[str, Any] = {"runs": runs, "aggregate": {k: list(v) for k, v in agg.items()}}
    results["sections"] = chosen
    results["section_seconds"] = seconds
    return _report.publish(
        cfg.out,
        title="posneg bench synthetic",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: [_metrics_plot(out, agg), _grid(out, images, grid_rows)],
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    metrics = list(dict.fromkeys(r["metric"] for r in runs))
    return {m: _report.mean_std([r["value"] for r in runs if r["metric"] == m]) for m in metrics}


def _metrics_plot(out: Path, agg: dict[str, tuple[float, float]]) -> Path:
    """One panel per section: its metrics as horizontal bars, mean ± std over seeds."""
    from matplotlib.figure import Figure

    sections = list(dict.fromkeys(k.split("/", 1)[0] for k in agg)) or ["(none)"]
    fig = Figure(figsize=(6, 2.2 * len(sections) + 0.5))
    axes = fig.subplots(len(sections), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, sections, strict=True):
        keys = [k for k in agg if k.split("/", 1)[0] == name]
        means = [agg[k][0] for k in keys]
        sds = [agg[k][1] for k in keys]
        ax.barh(range(len(keys)), means, xerr=sds, capsize=2)
        ax.set_yticks(range(len(keys)), [k.split("/", 1)[-1] for k in keys], fontsize=6)
        ax.set_title(name, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("posneg bench synthetic: mean ± std over seeds")
    return _report.save_figure(fig, out / "synthetic_metrics.png")


def _grid(out: Path, images: dict[str, torch.Tensor], grid_rows: dict[str, int]) -> Path:
    """One panel per section: its first seed's samples, ``grid_rows`` rows (any square size)."""
    from matplotlib.figure import Figure

    names = list(images) or ["(none)"]
    fig = Figure(figsize=(4 * len(names), 4))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        ax.axis("off")
        if name not in images:
            continue
        x = images[name][:, 0].float()
        h, w = x.shape[-2:]
        r = max(grid_rows[name], 1)
        c = -(-len(x) // r)
        lo, hi = float(x.min()), float(x.max())
        pad = torch.full((r * c - len(x), h, w), lo)
        tiles = torch.cat([x, pad]).reshape(r, c, h, w).permute(0, 2, 1, 3).reshape(r * h, c * w)
        ax.imshow(tiles.numpy(), cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6))
        ax.set_title(name)
    return _report.save_figure(fig, out / "synthetic_samples.png")


#: `posneg bench synthetic`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""Synthetic data as positives: GDA mixing, CoDSA and the other sections, on digits.

    Writes results.json, results.md, synthetic_metrics.png and synthetic_samples.png into --out.
    """,
    flags={"sections": ("--section",)},
)

#: The demo preset: an UNTRAINED DDPM, the GDA section's demo work, one seed (plumbing only).
DEMO_CONFIG = BenchConfig(
    preset="demo", ddpm_steps=0, judge_epochs=1, samples=0, sample_steps=3, seeds=1
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: every section's demo work, one seed (plumbing only)."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out), "quiet": True}))
    agg = result["aggregate"]
    rows = [(k, "value", f"{v[0]:.3f}") for k, v in list(agg.items())[:4]]
    return _report.DemoSummary(family="synthetic", rows=rows, report=Path(result["report"]))
