"""`posneg bench image-text`: DeGLA and SPN4CIR with a tiny CLIP-style two-tower model.

Part 1 (:mod:`posneg.bench._image_text_degla`): from one contrastively pretrained tiny two-tower
model (:mod:`posneg.bench._two_tower`) on composed two-digit images
(:func:`posneg.data.composed.make_composed_digits`), plain CLIP vs NegCLIP vs DeGLA
fine-tuning on the relation captions ``"a left b"``; scored by swap accuracy (compositional),
all-negatives accuracy and retention (zero-shot single-digit accuracy). Paper's claim: DeGLA
keeps more zero-shot accuracy than NegCLIP at a similar compositional gain.

Part 2 (:mod:`posneg.bench._image_text_cir`): SPN4CIR on digit composed image retrieval
(:func:`posneg.data.composed.make_digit_cir`): in-batch InfoNCE (batch 16) vs stage-2 full-bank
InfoNCE, each with and without window-sampled synthetic positives; R@1/R@10 on held-out
references. Paper's claims: full-bank negatives beat in-batch; synthetic positives help.

Every draw comes from generators seeded by the run's seed (weights under a forked global RNG);
same seed and thread count, same numbers. See ``docs/image_text.md``.

Python use::

    from posneg.bench.image_text import BenchConfig, run
    result = run(BenchConfig(seeds=1, quiet=True))
    result["aggregate"]          # per part and method: mean/std of every metric
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch

from posneg.bench import _harness as harness
from posneg.bench import _image_text_cir as cir
from posneg.bench import _image_text_degla as dg
from posneg.bench import _report
from posneg.data.composed import ComposedDigits, DigitCIR, make_composed_digits, make_digit_cir

__all__ = ["DEMO_CONFIG", "BenchConfig", "cli", "demo", "run"]

PARTS: tuple[str, ...] = ("degla", "spn4cir")
DEGLA_METRICS = dg.METRICS
CIR_METRICS: tuple[str, ...] = ("recall_at_1", "recall_at_10")


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        parts: which parts to run: degla, spn4cir.
        n_train, n_test: composed two-digit pairs drawn for training and testing (part 1).
        pretrain_epochs: contrastive pretraining epochs of the two-tower model.
        finetune_epochs: fine-tuning epochs of each method.
        batch_size: pretraining and fine-tuning batch size (part 1).
        pretrain_lr, finetune_lr: Adam learning rates (part 1).
        dim: embedding dimension of both parts' models.
        n_references: digit references of the CIR task (x 8 transforms = gallery, part 2).
        real_fraction: share of the train CIR triplets used as real triplets (few real).
        window_min, window_max: rank window of the synthetic targets in the train bank.
        cir_epochs: stage-2 epochs; cir_batch_size: its batch size (16 as in the card).
        cir_lr: stage-2 Adam learning rate; temperature: its InfoNCE temperature (0.02).
        encoder_epochs: full-batch epochs of the frozen digit-classifier image encoder.
        seeds: number of seeds.
        first_seed: the first seed.
        device: only cpu is supported (the model is tiny).
        threads: CPU threads for torch (0: automatic).
        out: output folder.
        quiet: no progress bars and no table.
    """

    parts: tuple[str, ...] = PARTS
    n_train: int = 2000
    n_test: int = 1000
    pretrain_epochs: int = 15
    finetune_epochs: int = 5
    batch_size: int = 64
    pretrain_lr: float = 2e-3
    finetune_lr: float = 3e-3
    dim: int = 32
    n_references: int = 300
    real_fraction: float = 0.1
    window_min: int = 20
    window_max: int = 200
    cir_epochs: int = 20
    cir_batch_size: int = 16
    cir_lr: float = 3e-3
    temperature: float = 0.02
    encoder_epochs: int = 200
    seeds: int = 3
    first_seed: int = 0
    device: str = "cpu"
    threads: int = 1
    out: str = "runs/image-text"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> None:
    for p in cfg.parts:
        if p not in PARTS:
            raise harness.UsageError(f"--part: unknown part {p!r}; known: {', '.join(PARTS)}")
    if not cfg.parts:
        raise harness.UsageError("--part: give at least one part")
    harness.check_common(cfg)
    if cfg.device != "cpu":
        raise harness.UsageError(f"--device: only cpu is supported here; got {cfg.device!r}")
    for flag, v, low in (
        ("--n-train", cfg.n_train, 16),
        ("--n-test", cfg.n_test, 16),
        ("--pretrain-epochs", cfg.pretrain_epochs, 1),
        ("--finetune-epochs", cfg.finetune_epochs, 1),
        ("--batch-size", cfg.batch_size, 2),
        ("--dim", cfg.dim, 2),
        ("--n-references", cfg.n_references, 8),
        ("--cir-epochs", cfg.cir_epochs, 1),
        ("--cir-batch-size", cfg.cir_batch_size, 2),
        ("--encoder-epochs", cfg.encoder_epochs, 1),
        ("--window-min", cfg.window_min, 0),
    ):
        harness.check_number(flag, v, low=low)
    if cfg.window_max <= cfg.window_min:
        raise harness.UsageError(
            f"--window-max: must be > --window-min ({cfg.window_min}); got {cfg.window_max}"
        )
    for flag, x in (
        ("--pretrain-lr", cfg.pretrain_lr),
        ("--finetune-lr", cfg.finetune_lr),
        ("--cir-lr", cfg.cir_lr),
        ("--temperature", cfg.temperature),
    ):
        harness.check_number(flag, x, low=0.0, closed="none")
    harness.check_number("--real-fraction", cfg.real_fraction, low=0.0, high=1.0, closed="high")


def _table(agg: list[dict[str, Any]], n: int) -> tuple[list[str], list[list[str]]]:
    header = ["part", "method", "swap acc.", "all-neg acc.", "retention", "R@1", "R@10"]
    rows = []
    for a in agg:
        cells = []
        for m in (*DEGLA_METRICS, *CIR_METRICS):
            key = f"{m}_mean"
            cells.append(_report.pct_cell(a[key], a[f"{m}_std"], n) if key in a else "")
        rows.append([a["part"], a["method"], *cells])
    return header, rows


def _claims(agg: list[dict[str, Any]], n: int) -> list[str]:
    by = {(a["part"], a["method"]): a for a in agg}
    lines = []

    def get(part: str, method: str, m: str) -> tuple[float, float]:
        a = by[(part, method)]
        return a[f"{m}_mean"], a[f"{m}_std"]

    if ("degla", "degla") in by:
        pre = get("degla", "pretrained", "swap_accuracy")[0]
        rd, rn = (
            get("degla", "degla", "retention_accuracy"),
            get("degla", "negclip", "retention_accuracy"),
        )
        sd, sn = get("degla", "degla", "swap_accuracy"), get("degla", "negclip", "swap_accuracy")
        verdict = "holds" if rd[0] > rn[0] and abs(sd[0] - sn[0]) < 0.03 else "does not hold"
        lines.append(
            f"- DeGLA claim (more retention than NegCLIP at similar compositional gain) {verdict} "
            f"here: retention {_report.fmt(*rd, pct=True)} vs {_report.fmt(*rn, pct=True)}; "
            f"swap accuracy {_report.fmt(*sd, pct=True)} vs {_report.fmt(*sn, pct=True)} "
            f"(pretrained {100 * pre:.1f}); {n} seed(s)."
        )
    if ("spn4cir", "full-bank") in by:
        fb, ib = (
            get("spn4cir", "full-bank", "recall_at_1"),
            get("spn4cir", "in-batch", "recall_at_1"),
        )
        fs = get("spn4cir", "full-bank+synthetic", "recall_at_1")
        lines.append(
            f"- SPN4CIR claim (full-bank negatives beat in-batch) "
            f"{'holds' if fb[0] > ib[0] else 'does not hold'}: R@1 {_report.fmt(*fb, pct=True)} "
            f"vs {_report.fmt(*ib, pct=True)}."
        )
        lines.append(
            f"- SPN4CIR claim (synthetic positives help, few real triplets) "
            f"{'holds' if fs[0] > fb[0] else 'does not hold'}: full-bank R@1 "
            f"{_report.fmt(*fs, pct=True)} with vs {_report.fmt(*fb, pct=True)} without."
        )
    return lines


def _plot(out: Path, agg: list[dict[str, Any]]) -> list[Path]:
    paths = []
    for part, metrics in (
        ("degla", (("swap_accuracy", "swap acc. (%)"), ("retention_accuracy", "retention (%)"))),
        ("spn4cir", (("recall_at_1", "R@1 (%)"), ("recall_at_10", "R@10 (%)"))),
    ):
        rows = [a for a in agg if a["part"] == part]
        if rows:
            mp = _report.MetricPlot(
                title=f"posneg bench image-text: {part}",
                label="method",
                group="part",
                metrics=metrics,
                scale=100.0,
                margin=0.1,
            )
            paths.append(mp.save(out / f"{part}.png", rows))
    return paths


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Raises:
        UsageError: a bad value (names the flag).
    """
    _validate(cfg)
    seeds = harness.seed_list(cfg)
    device = torch.device("cpu")
    started = time.perf_counter()
    hp = asdict(cfg) | {"window": (cfg.window_min, cfg.window_max)}
    jobs: list[tuple[str, int]] = [(p, s) for p in cfg.parts for s in seeds]
    with harness.torch_threads(cfg.threads, device) as threads:
        composed = (
            make_composed_digits(n_train=cfg.n_train, n_test=cfg.n_test)
            if "degla" in cfg.parts
            else None
        )
        task = make_digit_cir(n_references=cfg.n_references) if "spn4cir" in cfg.parts else None

        def one(job: tuple[str, int], tick: Any) -> list[dict[str, Any]]:
            part, seed = job
            if part == "degla":
                train, test = cast(tuple[ComposedDigits, ComposedDigits], composed)
                return dg.run_seed(seed, train, test, hp, tick)
            return cir.run_seed(seed, cast(DigitCIR, task), hp, tick)

        nested = harness.run_grid(
            jobs,
            one,
            describe=lambda j: f"{j[0]} seed={j[1]}",
            steps=4,
            quiet=cfg.quiet,
        )
    elapsed = time.perf_counter() - started
    runs = [r for rows in nested for r in rows]
    agg = []
    for part, metrics in (("degla", DEGLA_METRICS), ("spn4cir", CIR_METRICS)):
        part_runs = [r for r in runs if r["part"] == part]
        if part_runs:
            agg += _report.aggregate(part_runs, by=("part", "method"), metrics=metrics)
    header, rows = _table(agg, len(seeds))
    config = _report.resolved_config(
        cfg, seeds=seeds, device=device, threads=threads, elapsed_seconds=round(elapsed, 1)
    )
    notes = [
        "Setup: tiny two-tower model on composed sklearn digits (part 1); frozen MLP encoder + "
        "embedding-bag text side on digit CIR (part 2). Percentages, mean ± std over seeds.",
        *_claims(agg, len(seeds)),
    ]
    return _report.publish(
        cfg.out,
        title="posneg bench image-text",
        config=config,
        results={"runs": runs, "aggregate": agg},
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: _plot(out, agg),
        quiet=cfg.quiet,
        elapsed=elapsed,
    )


#: `posneg bench image-text`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""DeGLA vs NegCLIP vs CLIP fine-tuning, and SPN4CIR bank negatives / synthetic positives.

    A tiny CLIP-style two-tower model on composed two-digit images (swap accuracy, zero-shot
    retention) and digit composed image retrieval (R@1/R@10). Writes results.json, results.md
    and PNG plots into --out.
    """,
    flags={"parts": ("--part",)},
)

#: The demo preset: one seed, small data, few epochs (seconds).
DEMO_CONFIG = BenchConfig(
    seeds=1,
    n_train=200,
    n_test=100,
    pretrain_epochs=2,
    finetune_epochs=1,
    n_references=24,
    window_min=2,
    window_max=40,
    cir_epochs=1,
    encoder_epochs=20,
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: both parts, one seed."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out), "quiet": True}))
    rows = []
    for a in result["aggregate"]:
        if a["part"] == "degla":
            value = (
                f"{100 * a['swap_accuracy_mean']:.1f} / {100 * a['retention_accuracy_mean']:.1f}"
            )
            rows.append((f"degla: {a['method']}", "swap / retention acc. (%)", value))
        else:
            value = f"{100 * a['recall_at_1_mean']:.1f} / {100 * a['recall_at_10_mean']:.1f}"
            rows.append((f"spn4cir: {a['method']}", "R@1 / R@10 (%)", value))
    return _report.DemoSummary(family="image-text", rows=rows, report=Path(result["report"]))
