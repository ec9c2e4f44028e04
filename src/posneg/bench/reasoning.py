"""`posneg bench reasoning`: RAFT and resampling with a noisy verifier on a tiny GPT-2.

Task: multi-step arithmetic modulo 10 (:mod:`posneg.bench._arith`), checked exactly. Model: a
2-layer transformers GPT-2 pretrained by SFT (:mod:`posneg.bench._tiny_gpt`, cached; one model
for every seed, pretraining seed 0). Per seed:

- **RAFT** (:mod:`posneg.text.raft`, ``"local"`` best-of-K): each iteration samples K
  completions for M fresh training prompts, keeps the best by the step reward (share of right
  steps and answer) and fine-tunes on them; the baseline fine-tunes on one *random* sample per
  prompt (same count, same optimiser). Reported: held-out mean reward and accuracy after every
  iteration (one sample per problem).
- **Resampling** (:mod:`posneg.text.verifiers`): the pretrained policy resamples until a noisy
  verifier (``fpr``, ``fnr`` known) accepts, for K in :data:`KS`; measured accuracy against the
  closed form ``mean_i Acc(K; r_i)`` with ``r_i`` estimated from independent samples, and the
  ceiling ``mean_i c r_i / (c r_i + fpr (1 - r_i))``.
- Sections of other modules (:data:`SECTION_MODULES`), each ``SECTIONS`` dict, absent skipped.

Python use::

    from posneg.bench.reasoning import BenchConfig, run
    result = run(BenchConfig(seeds=1, iterations=2))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._arith import answer_correct, make_problems, noisy_verify, step_reward
from posneg.bench._reasoning_context import ReasoningContext, Section
from posneg.bench._tiny_gpt import (
    CharTokenizer,
    TinyGPTConfig,
    clone_model,
    pretrained_gpt,
    sample_completions,
    sft_on_texts,
)
from posneg.text.raft import RAFTSelector, raft_iteration
from posneg.text.verifiers import resample, resampling_accuracy, resampling_ceiling

__all__ = [
    "DEMO_CONFIG",
    "KS",
    "SECTION_MODULES",
    "BenchConfig",
    "cli",
    "collect_sections",
    "demo",
    "run",
]

#: Modules whose ``SECTIONS`` the bench runs (absent ones are skipped).
SECTION_MODULES: tuple[str, ...] = ("_reasoning_perstep", "_reasoning_disco")
#: Attempt budgets of the resampling curve.
KS: tuple[int, ...] = (1, 2, 4, 8, 16)


def collect_sections() -> dict[str, Section]:
    """Every section of every present module in :data:`SECTION_MODULES`, in order."""
    return harness.collect(SECTION_MODULES, "SECTIONS")


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        preset: ``default`` or ``demo`` (given to sections).
        pretrain_steps: SFT steps of the tiny GPT-2 (batch 64; cached by configuration).
        iterations: RAFT iterations.
        prompts: prompts per RAFT iteration (M).
        top_fraction: RAFT's ``top_reward_percentage`` (K = int(1 / top_fraction)).
        sft_epochs: SFT epochs per iteration.
        lr: AdamW learning rate of RAFT's SFT.
        discard_wrong: drop RAFT samples whose answer is wrong (LMFlow's discard hook with
            the exact check) before picking the best of K.
        n_test: held-out problems.
        fpr: false-positive rate of the noisy verifier.
        fnr: false-negative rate of the noisy verifier.
        r_samples: samples per problem to estimate r_i for the closed form.
        temperature: sampling temperature.
        max_k: the largest attempt budget of the resampling curve (budgets: :data:`KS` up to it).
        seeds: number of seeds.
        first_seed: the first seed.
        device: auto, cpu, cuda or cuda:N.
        threads: CPU threads for torch.
        out: output folder.
        quiet: no progress and no table.
    """

    preset: str = "default"
    pretrain_steps: int = 300
    iterations: int = 6
    prompts: int = 64
    top_fraction: float = 0.25
    sft_epochs: int = 2
    lr: float = 1e-3
    discard_wrong: bool = False
    n_test: int = 200
    fpr: float = 0.2
    fnr: float = 0.1
    r_samples: int = 32
    temperature: float = 1.0
    max_k: int = 16
    seeds: int = 3
    first_seed: int = 0
    device: str = "auto"
    threads: int = 1
    out: str = "runs/reasoning"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> None:
    harness.check_common(cfg)
    for flag, v in (("--iterations", cfg.iterations), ("--prompts", cfg.prompts)):
        harness.check_number(flag, v, low=1)
    harness.check_number("--n-test", cfg.n_test, low=1)
    harness.check_number("--max-k", cfg.max_k, low=1)
    if not 0 < cfg.top_fraction <= 1:
        raise harness.UsageError(f"--top-fraction: must be in (0, 1]; got {cfg.top_fraction}")
    for flag, rate in (("--fpr", cfg.fpr), ("--fnr", cfg.fnr)):
        if not 0 <= rate <= 1:
            raise harness.UsageError(f"{flag}: must be in [0, 1]; got {rate}")


def _evaluate(ctx: ReasoningContext, model: Any, g: torch.Generator) -> tuple[float, float]:
    comp = ctx.sample(model, ctx.test, 1, g)
    return float(step_reward(ctx.test, comp).mean()), float(
        answer_correct(ctx.test, comp).float().mean()
    )


def _raft_curve(
    ctx: ReasoningContext, cfg: BenchConfig, g: torch.Generator, *, random: bool
) -> dict[str, list[float]]:
    policy = ctx.fresh_policy()
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    rewards, accs, kept = [], [], []
    r0, a0 = _evaluate(ctx, policy, g)
    rewards.append(r0)
    accs.append(a0)
    selector = RAFTSelector("local", top_fraction=cfg.top_fraction)
    order = torch.randperm(len(ctx.train), generator=g)
    for t in range(cfg.iterations):
        idx = order[t * cfg.prompts : (t + 1) * cfg.prompts]

        def generate(prompts: Sequence[int], k: int) -> list[str]:
            return ctx.sample(policy, ctx.train.subset(torch.tensor(list(prompts))), k, g)

        def reward(prompts: Sequence[int], comps: Sequence[str]) -> torch.Tensor:
            sub = ctx.train.subset(torch.tensor(list(prompts)))
            r = step_reward(sub, list(comps))
            if random:  # the baseline: a random sample per prompt, rewards ignored
                return torch.rand(r.shape, generator=g)
            return r

        def train(prompts: list[int], comps: list[str]) -> float:
            texts = ctx.train.subset(torch.tensor(prompts)).prompts()
            return sft_on_texts(
                policy, opt, texts, comps, epochs=cfg.sft_epochs, batch=32, generator=g
            )

        def wrong(prompt: int, comp: str) -> bool:  # keep only exactly right samples
            return not bool(answer_correct(ctx.train.subset(torch.tensor([prompt])), [comp])[0])

        res = raft_iteration(
            idx.tolist(),
            generate=generate,
            reward=reward,
            train=train,
            selector=selector,
            discard=wrong if cfg.discard_wrong and not random else None,
        )
        sub = ctx.train.subset(torch.tensor(res.kept_prompts, dtype=torch.long))
        kept.append(float(step_reward(sub, res.kept_responses).mean()) if res.kept_prompts else 0.0)
        r, a = _evaluate(ctx, policy, g)
        rewards.append(r)
        accs.append(a)
    return {"reward": rewards, "accuracy": accs, "kept_reward": kept}


def _resampling(ctx: ReasoningContext, cfg: BenchConfig, g: torch.Generator) -> dict[str, Any]:
    test, model = ctx.test, ctx.model
    rep = test.subset(torch.arange(len(test)).repeat_interleave(cfg.r_samples))
    comp = ctx.sample(model, test, cfg.r_samples, g)
    r = answer_correct(rep, comp).double().reshape(len(test), cfg.r_samples).mean(1)
    measured, predicted = [], []
    for k in _ks(cfg):

        def generate(index: torch.Tensor, gen: torch.Generator | None) -> list[str]:
            return ctx.sample(model, test.subset(index), 1, gen)

        def verify(
            index: torch.Tensor, cands: list[str], gen: torch.Generator | None
        ) -> torch.Tensor:
            return noisy_verify(test.subset(index), cands, fpr=cfg.fpr, fnr=cfg.fnr, generator=gen)

        out = resample(len(test), k=k, generate=generate, verify=verify, generator=g)
        ans = [a if a is not None else "" for a in out.answers]
        ok = answer_correct(test, ans) & out.accepted
        measured.append(float(ok.double().mean()))
        predicted.append(float(resampling_accuracy(r=r, k=k, fpr=cfg.fpr, fnr=cfg.fnr).mean()))
    ceiling = float(resampling_ceiling(r=r, fpr=cfg.fpr, fnr=cfg.fnr).mean())
    return {
        "ks": _ks(cfg),
        "measured": measured,
        "predicted": predicted,
        "ceiling": ceiling,
        "r_mean": float(r.mean()),
    }


def _context(cfg: BenchConfig, model: Any, seed: int, device: torch.device) -> ReasoningContext:
    g = torch.Generator().manual_seed(10_000 + seed)
    n_train = cfg.iterations * cfg.prompts
    train = make_problems(max(n_train, 1), generator=g)
    test = make_problems(cfg.n_test, generator=g)

    def sample(m: Any, probs: Any, k: int, gen: torch.Generator | None) -> list[str]:
        return sample_completions(
            m, probs, num_samples=k, temperature=cfg.temperature, generator=gen
        )

    return ReasoningContext(
        train=train,
        test=test,
        model=model,
        fresh_policy=lambda: clone_model(model),
        tokenizer=CharTokenizer(),
        sample=sample,
        temperature=cfg.temperature,
        fpr=cfg.fpr,
        fnr=cfg.fnr,
        preset=cfg.preset,
        seed=seed,
        device=device,
        out=Path(cfg.out),
    )


def _one_seed(
    seed: int,
    cfg: BenchConfig,
    model: Any,
    sections: dict[str, Section],
    device: torch.device,
    tick: Callable[[], None],
) -> dict[str, Any]:
    ctx = _context(cfg, model, seed, device)
    out: dict[str, Any] = {"seed": seed}
    g = torch.Generator().manual_seed(seed)
    out["raft"] = _raft_curve(ctx, cfg, g, random=False)
    tick()
    g = torch.Generator().manual_seed(seed)
    out["sft_random"] = _raft_curve(ctx, cfg, g, random=True)
    tick()
    out["resampling"] = _resampling(ctx, cfg, torch.Generator().manual_seed(seed))
    tick()
    out["sections"] = {}
    for name, section in sections.items():
        out["sections"][name] = section(ctx, torch.Generator().manual_seed(seed))
        tick()
    return out


def _ks(cfg: BenchConfig) -> list[int]:
    return [k for k in KS if k <= cfg.max_k]


def _ms(values: Sequence[float]) -> tuple[float, float]:
    return _report.mean_std(list(values))


def _summary(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    n = len(runs)
    header = ["measure", "mean ± std", "seeds"]
    rows: list[list[str]] = []
    for arm in ("raft", "sft_random"):
        for key in ("reward", "accuracy"):
            first = _ms([r[arm][key][0] for r in runs])
            last = _ms([r[arm][key][-1] for r in runs])
            rows.append([f"{arm} held-out {key}: start", _report.fmt(*first), str(n)])
            rows.append([f"{arm} held-out {key}: final", _report.fmt(*last), str(n)])
    ks = runs[0]["resampling"]["ks"] if runs else []
    for i, k in enumerate(ks):
        m = _ms([r["resampling"]["measured"][i] for r in runs])
        p = _ms([r["resampling"]["predicted"][i] for r in runs])
        rows.append(
            [
                f"resampling acc K={k}: measured / closed form",
                f"{_report.fmt(*m)} / {_report.fmt(*p)}",
                str(n),
            ]
        )
    ceil = _ms([r["resampling"]["ceiling"] for r in runs])
    rows.append(["resampling ceiling (closed form)", _report.fmt(*ceil), str(n)])
    for name in runs[0]["sections"] if runs else []:
        for key, val in runs[0]["sections"][name].items():
            if isinstance(val, (int, float)):
                ms = _ms([float(r["sections"][name][key]) for r in runs])
                rows.append([f"{name}: {key}", _report.fmt(*ms), str(n)])
    gain_raft = [r["raft"]["reward"][-1] - r["raft"]["reward"][0] for r in runs]
    gain_rand = [r["sft_random"]["reward"][-1] - r["sft_random"]["reward"][0] for r in runs]
    rises = sum(a > 0 for a in gain_raft)
    ahead = sum(a > b for a, b in zip(gain_raft, gain_rand, strict=True))
    verdict = "holds" if rises == ahead == n else "does not hold" if rises == 0 else "mixed"
    top = _ms([r["resampling"]["measured"][-1] for r in runs])
    claims = [
        f"- RAFT claim (reward rises over iterations, more than SFT on random samples): gain "
        f"{_report.fmt(*_ms(gain_raft))} vs {_report.fmt(*_ms(gain_rand))}; RAFT rises in "
        f"{rises}/{n} seeds, ahead of random in {ahead}/{n}: {verdict}",
        f"- fLaws claim (accuracy plateaus at the ceiling < 1): K={ks[-1]} measured "
        f"{_report.fmt(*top)} vs ceiling {_report.fmt(*ceil)}",
    ]
    return header, rows, claims


def _plot(out: Path, runs: Sequence[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for arm, color in (("raft", "C0"), ("sft_random", "C1")):
        for j, r in enumerate(runs):
            axes[0].plot(r[arm]["reward"], color=color, alpha=0.7, label=arm if j == 0 else None)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("held-out step reward")
    axes[0].legend(fontsize=7)
    for j, r in enumerate(runs):
        rs = r["resampling"]
        axes[1].plot(
            rs["ks"], rs["measured"], "o-", color="C0", label="measured" if j == 0 else None
        )
        axes[1].plot(
            rs["ks"], rs["predicted"], "--", color="C2", label="closed form" if j == 0 else None
        )
        axes[1].axhline(rs["ceiling"], color="C3", ls=":", label="ceiling" if j == 0 else None)
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("K")
    axes[1].set_ylabel("accuracy")
    axes[1].legend(fontsize=7)
    path = _report.save_figure(fig, out / "reasoning.png")
    plt.close(fig)
    return [path]


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench; write results.json, results.md and the plot; return the results."""
    _validate(cfg)
    sections = collect_sections()
    device = harness.resolve_device(cfg.device)
    seeds = harness.seed_list(cfg)
    started = time.perf_counter()
    with harness.torch_threads(cfg.threads, device) as threads:
        model = pretrained_gpt(TinyGPTConfig(steps=cfg.pretrain_steps)).to(device)
        runs = harness.run_grid(
            seeds,
            lambda seed, tick: _one_seed(seed, cfg, model, sections, device, tick),
            describe=lambda seed: f"seed={seed}",
            steps=3 + len(sections),
            quiet=cfg.quiet,
        )
    elapsed = time.perf_counter() - started
    header, rows, claims = _summary(runs)
    notes = [
        f"Setup: tiny GPT-2 (2 layers, 64 dims) pretrained {cfg.pretrain_steps} SFT steps; RAFT "
        f"local best-of-{int(1 / cfg.top_fraction)}, {cfg.iterations} iterations x "
        f"{cfg.prompts} prompts; verifier fpr {cfg.fpr}, fnr {cfg.fnr}; seeds {seeds}.",
        f"Sections run: {', '.join(sections) or 'none present'}.",
        *claims,
    ]
    config = _report.resolved_config(
        cfg, seeds=seeds, device=device, threads=threads, elapsed_seconds=round(elapsed, 1)
    )
    return _report.publish(
        cfg.out,
        title="posneg bench reasoning",
        config=config,
        results={"runs": runs, "ks": _ks(cfg)},
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: _plot(out, runs),
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


#: `posneg bench reasoning`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""RAFT vs SFT on random samples, and resampling with a noisy verifier, on a tiny GPT-2.

    A 2-layer GPT-2 is pretrained on multi-step arithmetic (cached). RAFT's held-out reward over
    iterations is compared with SFT on random samples; resampling accuracy against K with a
    noisy verifier is compared with the closed form and its ceiling. Writes results.json,
    results.md and a PNG into --out.
    """,
)

#: The demo preset: a barely pretrained model, two iterations, one seed.
DEMO_CONFIG = BenchConfig(
    preset="demo",
    pretrain_steps=20,
    iterations=2,
    prompts=12,
    n_test=24,
    r_samples=4,
    max_k=4,
    seeds=1,
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: one seed, two RAFT iterations (seconds)."""
    result = run(replace(DEMO_CONFIG, out=str(out)))
    r = result["runs"][0]
    rows = [
        ("raft", "held-out reward (final)", f"{r['raft']['reward'][-1]:.3f}"),
        ("sft_random", "held-out reward (final)", f"{r['sft_random']['reward'][-1]:.3f}"),
        ("resampling", "accuracy K=4", f"{r['resampling']['measured'][-1]:.3f}"),
    ]
    return _report.DemoSummary(family="reasoning", rows=rows, report=Path(result["report"]))
