"""`posneg bench retrieval`: hard-negative training strategies compared on code search.

Every strategy (a spec such as ``static:num_negatives=2``, parsed by :data:`PARSER`; the
arguments go to its factory in :data:`posneg.mining.training.STRATEGIES`, whose own error is the
message) trains a bi-encoder on the train split of the standard library's code-search pairs
(:func:`posneg.data.code_search.load_code_search`) with
:func:`posneg.mining.training.train_strategy`, once per seed, and is scored on the test split
(each test query against all test code documents) by MRR@10, nDCG@10 and Recall@1/10/100.
``adapter`` mode (default) trains a query and a document adapter on a frozen sentence encoder's
cached embeddings; ``finetune`` trains the sentence-transformers model itself. All randomness
comes from generators seeded by the run's seed (the global RNG is left as it was): same seed,
device and thread count, same metrics. See ``docs/retrieval.md``.

Python use::

    from posneg.bench.retrieval import BenchConfig, run
    result = run(BenchConfig(strategies=("inbatch", "static", "adore"), seeds=2))
    result["aggregate"]        # per strategy: mean/std of every metric

``run(cfg, encoder=..., data=...)`` takes any :class:`~posneg.mining.encode.TextEncoder` and any
:class:`~posneg.data.code_search.CodeSearchData`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._ranking import HEADER, aggregate, table_row
from posneg.bench._retrieval_coop import (
    BENCH_STRATEGIES,
    OWN,
    fit_and_score_own,
    masked_views,
)
from posneg.bench._retrieval_coop import summary as _summary
from posneg.bench._retrieval_plot import plot
from posneg.data.retrieval import RetrievalTask, load_task, split_sizes
from posneg.mining.training import (
    METRICS,
    MODES,
    STRATEGIES,
    Adapter,
    Schedule,
    Strategy,
    fit_and_score,
    train_strategy,
)

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_STRATEGIES",
    "DEMO_CONFIG",
    "METRICS",
    "PARSER",
    "STRATEGIES",
    "Adapter",
    "BenchConfig",
    "RetrievalTask",
    "cli",
    "demo",
    "load_task",
    "run",
    "train_strategy",
]

#: Where the embeddings of the frozen encoder are cached unless ``--cache-dir`` says otherwise.
DEFAULT_CACHE_DIR = Path("~/.cache/posneg/embeddings")

#: The spec parser of `--strategy`: ``star`` and ``adore`` are registry keys (their losses);
#: the others are this recipe's own entries.
_OWN = tuple(k for k in BENCH_STRATEGIES if k not in ("star", "adore", "ar2", "cocosoda"))
PARSER = harness.SpecParser("--strategy", "strategy", tuple(BENCH_STRATEGIES), baselines=_OWN)

#: The strategies run when `--strategy` is not given: all of them.
DEFAULT_STRATEGIES: tuple[str, ...] = tuple(BENCH_STRATEGIES)


def _strategy(spec: harness.Spec) -> Strategy:
    """Build ``spec``'s strategy; a bad argument is the factory's own error, on one line."""
    return harness.build(BENCH_STRATEGIES[spec.key], spec, PARSER.where(spec))


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        strategies: spec strings (``static``, ``ance:refresh_every=10``).
        mode: ``adapter`` (frozen encoder, trained adapters) or ``finetune`` (the encoder).
        seeds, first_seed: training seeds ``first_seed, first_seed + 1, ...`` (``seeds=None``:
            3 for adapters, 1 to fine-tune).
        epochs: passes over the train split per run (adapter mode).
        steps: optimiser steps per run (finetune mode; adapter mode too when > 0).
        batch_size: queries per full batch (``None``: 64 for adapters, 16 to fine-tune).
        lr: learning rate (``None``: 1e-4 with Adam for adapters, 2e-5 with AdamW to fine-tune).
        weight_decay: weight decay of the optimiser.
        max_pairs: code-search pairs over all splits (``None``: all; 800 to fine-tune).
        max_seq_length: tokens read per text by the encoder.
        model: a sentence-transformers name or folder (default: the packaged all-MiniLM-L6-v2).
        cache_dir: embedding cache folder (``None``: ``~/.cache/posneg/embeddings``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (0: automatic, min(4, available cores) to encode and
            fine-tune, 1 to train adapters, whose small products only lose time to thread
            hand-offs; N: exactly N throughout).
        out: output folder.
        quiet: no progress bars and no table.
    """

    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    mode: str = "adapter"
    seeds: int | None = None
    first_seed: int = 0
    epochs: int = 6
    steps: int = 0
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 0.0
    max_pairs: int | None = None
    max_seq_length: int = 128
    model: str = "all-MiniLM-L6-v2"
    cache_dir: str | None = None
    device: str = "auto"
    threads: int = 0
    out: str = "runs/retrieval"
    quiet: bool = False


#: adapter-mode defaults (when ``lr`` / ``batch_size`` / ``seeds`` are not given)
ADAPTER_LR, ADAPTER_BATCH_SIZE, ADAPTER_SEEDS = 1e-4, 64, 3
#: finetune-mode defaults (when ``steps`` / ``max_pairs`` / ``lr`` / ``batch_size`` / ``seeds``
#: are not given)
FINETUNE_STEPS, FINETUNE_MAX_PAIRS = 40, 800
FINETUNE_LR, FINETUNE_BATCH_SIZE, FINETUNE_SEEDS = 2e-5, 16, 1


def _validate(cfg: BenchConfig) -> list[harness.Spec]:
    specs = PARSER.parse(cfg.strategies)
    for spec in specs:
        _strategy(spec)
    if cfg.mode not in MODES:
        raise harness.UsageError(f"--mode: must be one of {', '.join(MODES)}; got {cfg.mode!r}")
    harness.check_common(replace(cfg, seeds=1 if cfg.seeds is None else cfg.seeds))
    harness.check_number("--epochs", cfg.epochs, low=1)
    harness.check_number("--steps", cfg.steps, low=0)
    if cfg.batch_size is not None and cfg.batch_size < 2:
        raise harness.UsageError(
            f"--batch-size: must be >= 2 (a batch needs negatives); got {cfg.batch_size}"
        )
    if cfg.lr is not None:
        harness.check_number("--lr", cfg.lr, low=0.0, closed="none")
    harness.check_number("--weight-decay", cfg.weight_decay, low=0.0)
    if cfg.max_pairs is not None and cfg.max_pairs < 10:
        raise harness.UsageError(f"--max-pairs: must be >= 10; got {cfg.max_pairs}")
    harness.check_number("--max-seq-length", cfg.max_seq_length, low=8)
    if cfg.cache_dir is not None:
        cache = Path(cfg.cache_dir).expanduser()
        if cache.exists() and not cache.is_dir():
            raise harness.UsageError(f"--cache-dir: {cfg.cache_dir} exists and is not a folder")
    return specs


def _load_encoder(cfg: BenchConfig, device: torch.device) -> Any:
    from posneg.mining.encode import load_encoder

    try:
        return load_encoder(cfg.model, device=device, max_seq_length=cfg.max_seq_length)
    except (ValueError, OSError) as exc:
        raise harness.UsageError(f"--model: {exc}") from None


def _load_data(max_pairs: int | None) -> Any:
    from posneg.data.code_search import load_code_search

    return load_code_search(max_pairs=max_pairs)


@dataclass(frozen=True)
class _Context:
    """What every run of a bench shares."""

    task: RetrievalTask
    encoder: Any
    schedule: Schedule
    device: torch.device
    duplicate_of: torch.Tensor
    views: Mapping[str, Any]


def _run_one(
    spec: harness.Spec, seed: int, ctx: _Context, tick: Callable[[], None]
) -> dict[str, Any]:
    def progress(desc: str, done: int, total: int) -> None:
        if done:
            tick()

    if spec.key in OWN:
        info = fit_and_score_own(
            _strategy(spec),
            ctx.task,
            ctx.schedule,
            seed=seed,
            device=ctx.device,
            duplicate_of=ctx.duplicate_of,
            views=ctx.views.get(spec.label()),
        )
        for _ in range(ctx.schedule.total_steps):
            tick()
    else:
        info = fit_and_score(
            _strategy(spec),
            ctx.task,
            ctx.schedule,
            seed=seed,
            device=ctx.device,
            encoder=ctx.encoder,
            duplicate_of=ctx.duplicate_of,
            progress=progress,
        )
    timing = {k: round(info.pop(k), 3) for k in ("train_seconds", "eval_seconds")}
    head = {"strategy": spec.label(), "key": spec.key, "seed": seed}
    return {**head, "metrics": info.pop("metrics"), **timing, **info}


def run(
    cfg: BenchConfig,
    *,
    encoder: Any | None = None,
    data: Any | None = None,
    echo: Any | None = None,
) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Args:
        cfg: the configuration.
        encoder: a :class:`~posneg.mining.encode.TextEncoder` instead of loading ``cfg.model``
            (finetune mode needs one with a sentence-transformers ``model``).
        data: a :class:`~posneg.data.code_search.CodeSearchData` instead of the standard
            library's pairs; ``echo``: unused, kept for symmetry with the other benches.

    Returns:
        ``{"runs", "aggregate", "report": results.md path, "plots", "config"}``.

    Raises:
        UsageError: a bad spec, value or model (names the flag).
    """
    from posneg.bench._terminal import progress_callback
    from posneg.mining.mine import duplicate_groups

    specs = _validate(cfg)
    device = harness.resolve_device(cfg.device)
    finetune = cfg.mode == "finetune"
    max_pairs = cfg.max_pairs
    if max_pairs is None and finetune and data is None:
        max_pairs = FINETUNE_MAX_PAIRS
    n_seeds = cfg.seeds or (FINETUNE_SEEDS if finetune else ADAPTER_SEEDS)
    seeds = harness.seed_list(replace(cfg, seeds=n_seeds))
    lr = cfg.lr if cfg.lr is not None else (FINETUNE_LR if finetune else ADAPTER_LR)
    batch_size = cfg.batch_size or (FINETUNE_BATCH_SIZE if finetune else ADAPTER_BATCH_SIZE)
    cache_dir = Path(cfg.cache_dir if cfg.cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    started = time.perf_counter()
    timings: dict[str, float] = {}  # model load, data, embedding
    with harness.torch_threads(cfg.threads, device) as threads:
        t0 = time.perf_counter()
        if encoder is None:
            encoder = _load_encoder(cfg, device)
        if finetune and getattr(encoder, "model", None) is None:
            msg = "the encoder must be a sentence-transformers model"
            raise harness.UsageError(f"--mode finetune: {msg}")
        timings["model_load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if data is None:
            data = _load_data(max_pairs)
        timings["data_seconds"] = time.perf_counter() - t0
        for split, n in split_sizes(data).items():
            if n < 2:
                msg = f"the {split} split has {n} pairs; it needs at least 2 (use more pairs)"
                raise harness.UsageError(f"--max-pairs: {msg}")
        t0 = time.perf_counter()
        with progress_callback(disable=cfg.quiet) as progress:
            task = load_task(data, encoder, cache_dir=cache_dir, progress=progress)
        timings["embedding_seconds"] = time.perf_counter() - t0
        # 0 (automatic) trains adapters on one thread; N is N throughout
        train_threads = threads if cfg.threads or finetune or device.type != "cpu" else 1
        if device.type == "cpu":
            torch.set_num_threads(train_threads)
        if batch_size > task.n_train:
            raise harness.UsageError(
                f"--batch-size: {batch_size} exceeds the {task.n_train} training pairs"
            )
        steps_per_epoch = task.n_train // batch_size
        if cfg.steps > 0:
            total_steps = cfg.steps
        else:
            total_steps = FINETUNE_STEPS if finetune else cfg.epochs * steps_per_epoch
        schedule = Schedule(task.n_train, batch_size, total_steps, lr, cfg.weight_decay, cfg.mode)
        duplicate_of = duplicate_groups(list(task.train_docs)).to(device)
        views = masked_views(specs, task, encoder, cache_dir, device, finetune=finetune)
        ctx = _Context(task, encoder, schedule, device, duplicate_of, views)
        runs = harness.run_grid(
            [(spec, seed) for spec in specs for seed in seeds],
            lambda job, tick: _run_one(job[0], job[1], ctx, tick),
            describe=lambda job: f"{job[0].label()} seed={job[1]}",
            steps=total_steps,
            quiet=cfg.quiet,
        )
    elapsed = time.perf_counter() - started
    agg = aggregate(runs)
    header = list(HEADER)
    rows = [table_row(a) for a in agg]
    adapters = "query and document: normalize(x + W x + b), W = b = 0 at start; Adam"
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        strategies=[s.label() for s in specs],
        resolved_lr=lr,
        resolved_batch_size=batch_size,
        resolved_max_pairs=max_pairs,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        torch_threads_training=train_threads,
        encoder=repr(encoder),
        cache_dir=str(cache_dir),
        n_train=task.n_train,
        n_test=task.n_test,
        dim=task.dim,
        adapters="none (the encoder is trained; AdamW)" if finetune else adapters,
        **{k: round(v, 2) for k, v in timings.items()},
        elapsed_seconds=round(elapsed, 1),
    )
    notes = [
        f"Test split: {task.n_test} queries against the {task.n_test} test code documents (one "
        f"relevant each); trained on {task.n_train} train pairs, {total_steps} steps of batch "
        f"{batch_size} per run ({cfg.mode} mode), mean ± sample std over seeds {seeds}.",
        "",
        "Strategies:",
        "",
        *[f"- `{s.label()}`: {_summary(s.key)}" for s in specs],
    ]
    diverged = [r for r in runs if r["diverged_at_step"] is not None]
    if diverged:
        notes += ["", "Diverged runs (non-finite loss; metrics n/a): "]
        notes[-1] += ", ".join(f"{r['strategy']} seed={r['seed']}" for r in diverged)
    results = {"runs": runs, "aggregate": agg}
    title = f"posneg bench retrieval ({cfg.mode} mode)"
    out = Path(cfg.out)
    report = _report.write_report(
        out,
        title=title,
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n".join(notes),
    )
    plots = plot(out, agg, cfg.mode)
    if not cfg.quiet:
        _report.show(
            f"{title[:-1]}, test split)",
            header,
            rows,
            report=report,
            elapsed=elapsed,
            keep_first_column=True,
        )
    return {**results, "report": report, "plots": plots, "config": config}


_D = BenchConfig()


#: The help of the recipe's own options.
_HELP = {
    "strategy": "Strategy spec, repeatable: untrained, inbatch, random, static, ance, star, "
    "adore, ngame, fn-aware, ar2, cocosoda, with arguments as in "
    "'static:num_negatives=2,pool=10'. Default: all.",
    "mode": "adapter (frozen encoder + trained adapters) or finetune.",
    "epochs": "Epochs per run (adapter mode).",
    "steps": f"Optimiser steps per run (0: epochs in adapter mode, {FINETUNE_STEPS} in finetune).",
    "batch_size": "Queries per batch (default: 64; finetune 16).",
    "lr": "Learning rate (default: 1e-4 adapters, 2e-5 finetune).",
    "weight_decay": "Weight decay.",
    "max_pairs": f"Code-search pairs, all splits (default: all; {FINETUNE_MAX_PAIRS} finetune).",
    "max_seq_length": "Tokens read per text by the encoder.",
    "model": "sentence-transformers model name or folder (offline).",
    "cache_dir": "Embedding cache folder. Default: ~/.cache/posneg/embeddings.",
    "threads": "CPU threads for torch (0: automatic, min(4, cores) to encode and fine-tune, 1 to "
    "train adapters; N: exactly N).",
}


def cli(
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", "-s", help=_HELP["strategy"])
    ] = None,
    mode: Annotated[str, typer.Option(help=_HELP["mode"])] = _D.mode,
    seeds: harness.SeedsOption = None,  # type: ignore[assignment]  # None: the mode's default
    first_seed: harness.FirstSeedOption = _D.first_seed,
    epochs: Annotated[int, typer.Option(help=_HELP["epochs"])] = _D.epochs,
    steps: Annotated[int, typer.Option(help=_HELP["steps"])] = _D.steps,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", "-b", help=_HELP["batch_size"])
    ] = None,
    lr: Annotated[float | None, typer.Option(help=_HELP["lr"])] = None,
    weight_decay: Annotated[float, typer.Option(help=_HELP["weight_decay"])] = _D.weight_decay,
    max_pairs: Annotated[int | None, typer.Option(help=_HELP["max_pairs"])] = None,
    max_seq_length: Annotated[int, typer.Option(help=_HELP["max_seq_length"])] = 128,
    model: Annotated[str, typer.Option(help=_HELP["model"])] = _D.model,
    cache_dir: Annotated[Path | None, typer.Option(help=_HELP["cache_dir"])] = None,
    device: harness.DeviceOption = _D.device,
    threads: Annotated[int, typer.Option(help=_HELP["threads"])] = _D.threads,
    out: harness.OutOption = Path(_D.out),
    quiet: harness.QuietOption = False,
) -> None:
    """Hard-negative training strategies on stdlib code search; MRR@10, nDCG@10, Recall@k.

    Every strategy and seed trains query/document adapters on a frozen sentence encoder (or the
    encoder itself with --mode finetune) on the train split, then ranks the test split's code
    for its queries. Writes results.json, results.md and retrieval.png into --out.
    """
    cfg = BenchConfig(
        strategies=tuple(strategy) if strategy else DEFAULT_STRATEGIES,
        cache_dir=None if cache_dir is None else str(cache_dir),
        out=str(out),
        mode=mode,
        seeds=seeds,
        first_seed=first_seed,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        max_pairs=max_pairs,
        max_seq_length=max_seq_length,
        model=model,
        device=device,
        threads=threads,
        quiet=quiet,
    )
    result = run(cfg)
    if quiet:
        typer.echo(str(result["report"]))


#: The demo preset: a subset of the pairs, one seed, four strategies, adapter mode.
DEMO_CONFIG = BenchConfig(
    strategies=("untrained", "inbatch", "static", "adore"), seeds=1, epochs=8, max_pairs=600
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: four strategies, one seed, adapter mode, 600 pairs."""
    cfg = BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)})
    result = run(cfg)
    rows = [
        (a["strategy"], "test MRR@10 / R@10", f"{a['mrr@10_mean']:.3f} / {a['recall@10_mean']:.3f}")
        for a in result["aggregate"]
    ]
    return _report.DemoSummary(family="retrieval", rows=rows, report=Path(result["report"]))
