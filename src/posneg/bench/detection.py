"""`posneg bench detection`: ATSS against IoU-threshold assignment on pasted-digit scenes.

Zhang et al., CVPR 2020 (arXiv 1912.02424), on a CPU-sized stand-in for COCO
(:mod:`posneg.bench._det_scenes`: 8x8 digits upsampled to 12-32 px and pasted onto crops of
scikit-learn's sample photographs, 64 px scenes; digits 0-2 by default, ``--classes`` for more:
the assignment is class-agnostic, and fewer classes give an AP that can be compared at CPU size).
Per seed, the same tiny single-stage detector with **one anchor per location**
(:mod:`posneg.bench._det_model`: three levels, focal loss for classes, GIoU for boxes, no
centerness) is trained from the same initial weights on the same scenes with each assigner:

- ``atss``: :func:`posneg.detection.atss.atss_assign` (top-9 per level, as released: no fallback);
- ``iou``: :func:`posneg.detection.atss.iou_threshold_assign` (RetinaNet: positive IoU >= 0.5,
  background < 0.4, ignored in between, low-quality matches on).

Reported on held-out source scenes: COCO-style AP (0.5:0.95, 101 points), AP50, AP75 and AP by
size (:data:`posneg.bench._det_model.AREA_RANGES`, small < 12^2 <= medium < 20^2 <= large
px^2), plus, from the training scenes, the share of boxes that got at least one positive and the
positives per box. Claim (paper): with one anchor per location, ATSS gives better AP than IoU
assignment (R-50 RetinaNet #A = 1: 37.0 -> 39.3 AP on COCO minival with the same head).

Then the sections of other papers (fixed list :data:`SECTION_MODULES`, absent files skipped)
each get a :class:`~posneg.bench._det_context.DetContext` with the seed's scenes and the
ATSS-trained detector, and return their metrics for the seed. The source-free sections
(Grounded Teacher, WSCoL) share the seed's source, AdaBN and mean-teacher runs through the
context's ``extra`` (:func:`posneg.bench._det_sfda.baselines`). ``--full`` adds Grounded
Teacher's expert-guidance variants (three more adaptations per seed; the default stays within
5 CPU-minutes on one thread).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._det_context import DetContext, DetScenes, Section
from posneg.bench._det_model import (
    ASSIGNERS,
    TinyDetector,
    assign_targets,
    evaluate,
    predict,
    train_detector,
)
from posneg.bench._det_scenes import NUM_CLASSES, make_scenes
from posneg.bench._det_sfda import CACHE as SFDA_CACHE

__all__ = [
    "DEMO_CONFIG",
    "SECTION_MODULES",
    "BenchConfig",
    "cli",
    "collect_sections",
    "demo",
    "run",
]

#: Modules whose ``SECTIONS`` the bench runs after the assigner comparison (absent ones skipped).
SECTION_MODULES = ("_detection_cqdino", "_detection_gt", "_detection_wscol")
METRICS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "covered", "pos_per_box")
MODEL = "3-level conv detector, 1 square anchor (4x stride) per location, focal + 2 GIoU, Adam"


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        assigners: any of ``atss``, ``iou``.
        classes: digit classes in the scenes (digits ``0 .. classes - 1``); also the sections'.
        min_size: smallest digit side in px (largest 32; log-uniform in between).
        train_scenes: source training scenes per seed.
        test_scenes: held-out source scenes per seed (AP).
        target_scenes: target-domain scenes per seed (train and test each), for the sections.
        steps: training steps per detector.
        batch_size: scenes per step.
        lr: Adam learning rate (cosine decay to 0).
        width: channels of the detector's levels and head.
        sections: run the other papers' sections (SECTION_MODULES) after the comparison.
        full: the sections' full preset (Grounded Teacher's expert-guidance variants too).
        seeds: number of seeds.
        first_seed: the first seed.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (0: automatic).
        out: output folder.
        quiet: no progress bars and no table.
    """

    assigners: tuple[str, ...] = ASSIGNERS
    classes: int = 3
    min_size: float = 12.0
    train_scenes: int = 600
    test_scenes: int = 150
    target_scenes: int = 100
    steps: int = 400
    batch_size: int = 16
    lr: float = 3e-3
    width: int = 32
    sections: bool = True
    full: bool = False
    seeds: int = 3
    first_seed: int = 0
    device: str = "auto"
    threads: int = 1
    out: str = "runs/detection"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> BenchConfig:
    if not cfg.assigners:
        raise harness.UsageError("--assigner: give at least one assigner")
    for a in cfg.assigners:
        if a not in ASSIGNERS:
            raise harness.UsageError(
                f"--assigner: unknown assigner {a!r}; known: {', '.join(ASSIGNERS)}"
            )
    harness.check_common(cfg)
    harness.check_number("--classes", cfg.classes, low=1, high=NUM_CLASSES, closed="both")
    harness.check_number("--min-size", cfg.min_size, low=4.0, high=32.0, closed="both")
    harness.check_number("--train-scenes", cfg.train_scenes, low=2)
    harness.check_number("--test-scenes", cfg.test_scenes, low=1)
    harness.check_number("--target-scenes", cfg.target_scenes, low=1)
    harness.check_number("--steps", cfg.steps, low=1)
    harness.check_number("--batch-size", cfg.batch_size, low=1)
    harness.check_number("--lr", cfg.lr, low=0.0)
    harness.check_number("--width", cfg.width, low=1)
    return cfg


def collect_sections() -> dict[str, Section]:
    """The sections of :data:`SECTION_MODULES` that exist, in that order."""
    return harness.collect(SECTION_MODULES, "SECTIONS")


@dataclass
class _SeedData:
    train: DetScenes
    test: DetScenes
    target_train: DetScenes
    target_test: DetScenes
    longtail: DetScenes


def _scenes(cfg: BenchConfig, seed: int) -> _SeedData:
    g = torch.Generator().manual_seed(seed)
    n_t = cfg.target_scenes
    kw: dict[str, Any] = {"classes": cfg.classes, "min_size": cfg.min_size, "generator": g}
    return _SeedData(
        make_scenes(cfg.train_scenes, **kw),
        make_scenes(cfg.test_scenes, split="test", **kw),
        make_scenes(n_t, domain="target", **kw),
        make_scenes(n_t, domain="target", split="test", **kw),
        make_scenes(cfg.train_scenes, long_tail=20.0, **kw),
    )


def _coverage(model: TinyDetector, scenes: DetScenes, assigner: str) -> tuple[float, float]:
    """Share of boxes with at least one positive anchor, and positives per box."""
    n_box = covered = pos = 0
    for b, lab in zip(scenes.boxes, scenes.labels, strict=True):
        one = DetScenes(scenes.images[:1], [b], [lab])
        labels, boxes = assign_targets(model, one, assigner)
        keep = labels[0] >= 0
        n_box += len(b)
        pos += int(keep.sum())
        covered += sum(bool((keep & (boxes[0] == box).all(1)).any()) for box in b)
    return covered / max(n_box, 1), pos / max(n_box, 1)


def _train(
    cfg: BenchConfig,
    data: _SeedData,
    assigner: str,
    seed: int,
    device: torch.device,
    tick: Callable[[], None] | None = None,
) -> TinyDetector:
    with harness.seeded(device, seed):
        model = TinyDetector(cfg.classes, width=cfg.width).to(device)
    g = torch.Generator().manual_seed(10_000 + seed)
    train_detector(
        model,
        data.train,
        assigner=assigner,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        generator=g,
        tick=(lambda _s: tick()) if tick is not None else None,
    )
    return model


def _plot(out: Path, data: _SeedData, models: Mapping[str, TinyDetector], n: int = 6) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    n = min(n, len(data.test))
    fig, axes = plt.subplots(len(names), n, figsize=(2.0 * n, 2.2 * len(names)), squeeze=False)
    images = data.test.images[:n]
    for r, name in enumerate(names):
        dets = predict(models[name], images)
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(images[c].permute(1, 2, 0).numpy())
            for b in data.test.boxes[c].tolist():
                ax.add_patch(
                    plt.Rectangle(
                        (b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="lime", lw=1
                    )
                )
            d = dets[c]
            for b, s, lab in zip(
                d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(), strict=True
            ):
                if s < 0.3:
                    continue
                ax.add_patch(
                    plt.Rectangle(
                        (b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="red", lw=1
                    )
                )
                ax.text(b[0], b[1], f"{lab}:{s:.2f}", color="red", fontsize=6, va="bottom")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name)
    fig.suptitle(
        "posneg bench detection: green ground truth, red detections (score >= 0.3), first seed"
    )
    fig.tight_layout()
    return _report.save_figure(fig, out / "predictions.png")


def _run_sections(
    sections: Mapping[str, Section],
    data: _SeedData,
    model: TinyDetector,
    cfg: BenchConfig,
    seed: int,
    device: torch.device,
) -> list[dict[str, Any]]:
    def make(generator: torch.Generator) -> TinyDetector:
        with harness.seeded(device, int(torch.randint(0, 2**31 - 1, (1,), generator=generator))):
            return TinyDetector(cfg.classes, width=cfg.width).to(device)

    def train(m: TinyDetector, scenes: DetScenes, **kw: Any) -> TinyDetector:
        kw.setdefault("steps", cfg.steps)
        kw.setdefault("batch_size", cfg.batch_size)
        kw.setdefault("lr", cfg.lr)
        return train_detector(m, scenes, **kw)

    ctx = DetContext(
        source_train=data.train,
        source_test=data.test,
        target_train=data.target_train,
        target_test=data.target_test,
        longtail_train=data.longtail,
        num_classes=cfg.classes,
        image_size=64,
        make_detector=make,
        train_detector=train,
        predict=predict,
        evaluate=evaluate,
        source_detector=model,
        steps=cfg.steps,
        preset="demo" if cfg.steps < 50 else ("full" if cfg.full else "default"),
        seed=seed,
        device=device,
        out=Path(cfg.out),
        extra={SFDA_CACHE: {}},  # the source-free sections' shared baselines of this seed
    )
    rows = []
    for name, section in sections.items():
        started, cpu = time.perf_counter(), time.process_time()
        metrics = section(ctx, torch.Generator().manual_seed(20_000 + seed))
        row = {
            k: float(v)
            for k, v in metrics.items()
            if not k.startswith("_") and isinstance(v, (int, float))
        }
        rows.append(
            {
                "section": name,
                "seed": seed,
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
                **row,
            }
        )
    return rows


def _claims(agg: list[dict[str, Any]], runs: list[dict[str, Any]], n: int) -> list[str]:
    by = {a["assigner"]: a for a in agg}
    if "atss" not in by or "iou" not in by:
        return []
    diffs = []
    for r in runs:
        if r["assigner"] == "atss":
            other = next(o for o in runs if o["assigner"] == "iou" and o["seed"] == r["seed"])
            diffs.append(r["ap"] - other["ap"])
    mean, sd = _report.mean_std(diffs)
    wins = sum(d > 0 for d in diffs)
    verdict = "supports" if mean > 0 and wins == len(diffs) else "does not support"
    return [
        "Claim (Zhang et al., CVPR 2020): with one anchor per location, ATSS gives better AP than "
        f"IoU-threshold assignment. AP (0.5:0.95) ATSS minus IoU: {_report.pp_cell(mean, sd, n)} "
        f"points ({wins}/{len(diffs)} seeds ATSS higher): this run {verdict} the claim "
        "(supports: higher on every seed).",
        "Boxes with at least one positive: ATSS "
        f"{_report.pct_cell(by['atss']['covered_mean'], by['atss']['covered_std'], n)}%, IoU "
        f"{_report.pct_cell(by['iou']['covered_mean'], by['iou']['covered_std'], n)}% "
        "(IoU counts low-quality matches; ATSS as released has no fallback).",
    ]


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs", "aggregate", "sections", "report", "plots", "config"}``.

    Raises:
        UsageError: a bad value (names the flag).
    """
    cfg = _validate(cfg)
    device = harness.resolve_device(cfg.device)
    seeds = harness.seed_list(cfg)
    sections = collect_sections() if cfg.sections else {}
    started, cpu_started = time.perf_counter(), time.process_time()
    cache: dict[int, _SeedData] = {}
    models: dict[tuple[str, int], TinyDetector] = {}

    def one(job: tuple[str, int], tick: Callable[[], None]) -> dict[str, Any]:
        assigner, seed = job
        if seed not in cache:
            cache[seed] = _scenes(cfg, seed)
        data = cache[seed]
        t0 = time.perf_counter()
        model = _train(cfg, data, assigner, seed, device, tick)
        seconds = time.perf_counter() - t0
        models[(assigner, seed)] = model
        metrics = evaluate(predict(model, data.test.images), data.test)
        covered, per_box = _coverage(model, data.train, assigner)
        return {
            "assigner": assigner,
            "seed": seed,
            **metrics,
            "covered": covered,
            "pos_per_box": per_box,
            "train_seconds": seconds,
        }

    section_rows: list[dict[str, Any]] = []
    with harness.torch_threads(cfg.threads, device) as threads:
        runs = harness.run_grid(
            [(a, s) for s in seeds for a in cfg.assigners],
            one,
            describe=lambda job: f"{job[0]} seed={job[1]}",
            steps=cfg.steps,
            quiet=cfg.quiet,
        )
        if sections:
            base = "atss" if "atss" in cfg.assigners else cfg.assigners[0]
            for seed in seeds:
                section_rows += _run_sections(
                    sections, cache[seed], models[(base, seed)], cfg, seed, device
                )
    elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    agg = _report.aggregate(runs, by=("assigner",), metrics=METRICS, means=("train_seconds",))
    n = len(seeds)
    header = [
        "assigner",
        "AP",
        "AP50",
        "AP75",
        "AP small",
        "AP medium",
        "AP large",
        "boxes with a positive (%)",
        "positives / box",
    ]
    rows = [
        [a["assigner"]]
        + [_report.pct_cell(a[f"{m}_mean"], a[f"{m}_std"], n) for m in METRICS[:7]]
        + [_report.fmt(a["pos_per_box_mean"], a["pos_per_box_std"], digits=2)]
        for a in agg
    ]
    sec_agg = _section_table(section_rows, n)
    notes = [
        f"Scenes per seed: {cfg.train_scenes} train / {cfg.test_scenes} test (64 px, 1-4 digits "
        f"of {cfg.min_size:g}-32 px, classes 0-{cfg.classes - 1}); {cfg.steps} steps of "
        f"{cfg.batch_size}, lr {cfg.lr:g}; seeds {seeds}. AP in percent, "
        "COCO-style (101 points), by box area small < 144 <= medium < 400 <= large px^2.",
        *_claims(agg, runs, n),
        *sec_agg[1],
    ]
    if not sections and cfg.sections:
        notes.append(f"No section module present ({', '.join(SECTION_MODULES)}).")
    if {"grounded_teacher", "wscol"} & set(sections):
        notes.append(
            "Source-free sections: source, AdaBN and mean-teacher AP are one shared run per seed "
            "(the same numbers in each section); Grounded Teacher's expert-guidance variants "
            + ("ran (--full)." if cfg.full else "run only with --full.")
        )
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        model=MODEL,
        section_names=list(sections),
        elapsed_seconds=round(elapsed, 1),
        cpu_seconds=round(cpu_elapsed, 1),
    )
    results = {
        "runs": runs,
        "aggregate": agg,
        "sections": section_rows,
        "sections_aggregate": sec_agg[0],
    }
    out = Path(cfg.out)
    title = "posneg bench detection"
    report = _report.write_report(
        out,
        title=title,
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n\n".join(notes),
    )
    first = seeds[0]
    plots = [_plot(out, cache[first], {a: models[(a, first)] for a in cfg.assigners})]
    if not cfg.quiet:
        _report.show(title, header, rows, notes, report=report, elapsed=elapsed)
    return {**results, "report": report, "plots": plots, "config": config}


def _section_table(rows: list[dict[str, Any]], n: int) -> tuple[list[dict[str, Any]], list[str]]:
    agg: list[dict[str, Any]] = []
    lines = []
    for name in dict.fromkeys(r["section"] for r in rows):
        rs = [r for r in rows if r["section"] == name]
        keys = [k for k in rs[0] if k not in ("section", "seed")]
        entry: dict[str, Any] = {"section": name, "seeds": [r["seed"] for r in rs]}
        cells = []
        for k in keys:
            vals = [r.get(k, math.nan) for r in rs]
            m, s = _report.mean_std(vals)
            entry[f"{k}_mean"], entry[f"{k}_std"] = m, s
            cells.append(f"{k} {_report.fmt(m, s)}")
        agg.append(entry)
        lines.append(f"Section `{name}` (mean ± std over {n} seeds): " + ", ".join(cells) + ".")
    return agg, lines


#: `posneg bench detection`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""ATSS vs IoU-threshold anchor assignment: AP and AP by size, one anchor per location.

    A tiny single-stage detector on 64 px scenes of digits pasted onto real photographs,
    trained with each assigner from the same weights; COCO-style AP, AP by size and box
    coverage, then the detection sections of other papers. Writes results.json, results.md and
    a PNG of predictions into --out.
    """,
    flags={"assigners": ("--assigner", "-a"), "batch_size": ("--batch-size", "-b")},
)

#: The demo preset: both assigners, one seed, 64 scenes, 30 steps, no sections.
DEMO_CONFIG = BenchConfig(
    seeds=1, train_scenes=64, test_scenes=16, target_scenes=4, steps=30, sections=False
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: both assigners, one seed, 30 steps (a smoke run)."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)}))
    rows = [(a["assigner"], "AP50 (%)", f"{100 * a['ap50_mean']:.1f}") for a in result["aggregate"]]
    return _report.DemoSummary(family="detection", rows=rows, report=Path(result["report"]))
