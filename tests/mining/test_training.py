"""posneg.mining.training: strategy factories (validation), resolution, schedule, towers, loop."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from posneg.data.retrieval import RetrievalTask
from posneg.mining import training
from posneg.mining.metrics import retrieval_metrics
from posneg.mining.training import (
    METRICS,
    STRATEGIES,
    Adapter,
    AdapterTowers,
    Schedule,
    Strategy,
    fit_and_score,
    resolve_args,
    summary,
    train_strategy,
)


def _task(n: int = 48, m: int = 12, dim: int = 16, seed: int = 0) -> RetrievalTask:
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n + m, dim, generator=g), dim=1)
    d = torch.nn.functional.normalize(q + 0.3 * torch.randn(n + m, dim, generator=g), dim=1)
    names = tuple(f"t{i}" for i in range(n + m))
    return RetrievalTask(names[:n], names[:n], names[n:], names[n:], q[:n], d[:n], q[n:], d[n:])


# --------------------------------------------------------------------------------------------
# factories
# --------------------------------------------------------------------------------------------


def test_every_factory_builds_with_defaults_and_has_a_summary() -> None:
    for key, factory in STRATEGIES.items():
        strategy = factory()
        assert isinstance(strategy, Strategy) and strategy.key == key
        assert summary(key) and "\n" not in summary(key)
    assert not STRATEGIES["untrained"]().trains
    assert STRATEGIES["ance"]().negatives == "refresh"
    assert STRATEGIES["fn_aware"]().args["relative_margin"] == 0.05
    assert STRATEGIES["inbatch"](temperature=1).args["temperature"] == 1.0  # a float


@pytest.mark.parametrize(
    ("key", "kwargs", "error", "fragment"),
    [
        ("inbatch", {"temperature": 0}, ValueError, "inbatch: temperature must be > 0"),
        ("random", {"num_negatives": 0}, ValueError, "random: num_negatives must be >= 1"),
        ("static", {"pool": 2.5}, TypeError, "static: pool must be an int"),
        ("static", {"num_negatives": 3, "pool": 2}, ValueError, "num_negatives (3) must be <="),
        ("star", {"range_min": 9, "range_max": 3}, ValueError, "range_min (9) must be <="),
        ("ance", {"refresh_every": 0}, ValueError, "ance: refresh_every must be >= 1"),
        ("adore", {"k": 0}, ValueError, "adore: k must be >= 1"),
        ("ngame", {"every": 0}, ValueError, "ngame: every must be >= 1"),
        ("fn_aware", {"relative_margin": 1.0}, ValueError, "relative_margin must be in"),
        ("fn_aware", {"margin": float("nan")}, ValueError, "fn_aware: margin"),
        ("untrained", {"k": 3}, TypeError, "unexpected keyword argument 'k'"),
    ],
)
def test_bad_arguments_are_the_factorys_own_errors(
    key: str, kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        STRATEGIES[key](**kwargs)
    assert fragment in str(info.value)


def test_resolve_args_fills_the_mode_defaults() -> None:
    ance, ngame, adore = STRATEGIES["ance"](), STRATEGIES["ngame"](), STRATEGIES["adore"](k=7)
    assert (
        resolve_args(ance, mode="adapter", steps_per_epoch=5, total_steps=30)["refresh_every"] == 10
    )
    assert (
        resolve_args(ngame, mode="adapter", steps_per_epoch=5, total_steps=30)["refresh_every"] == 5
    )
    assert (
        resolve_args(ance, mode="finetune", steps_per_epoch=5, total_steps=40)["refresh_every"]
        == 10
    )
    assert (
        resolve_args(ngame, mode="finetune", steps_per_epoch=5, total_steps=40)["refresh_every"]
        == 8
    )
    assert resolve_args(adore, mode="adapter", steps_per_epoch=5, total_steps=30)["metric_cut"] == 7
    given = STRATEGIES["ance"](refresh_every=3)
    assert (
        resolve_args(given, mode="adapter", steps_per_epoch=5, total_steps=30)["refresh_every"] == 3
    )
    assert ance.args["refresh_every"] is None  # the strategy itself is unchanged


# --------------------------------------------------------------------------------------------
# schedule and towers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"batch_size": 1}, "batch_size must be >= 2"),
        ({"batch_size": 64}, "batch_size (64) exceeds the 48 training pairs"),
        ({"total_steps": 0}, "total_steps must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"mode": "full"}, "mode must be one of"),
    ],
)
def test_schedule_is_validated(kwargs: dict[str, object], fragment: str) -> None:
    base: dict[str, object] = {"n_train": 48, "batch_size": 8, "total_steps": 4, "lr": 1e-2}
    with pytest.raises(ValueError, match="Schedule") as info:
        Schedule(**{**base, **kwargs})  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert Schedule(48, 8, 4, 1e-2).steps_per_epoch == 6


def test_adapter_starts_as_identity_and_towers_rank_as_the_encoder() -> None:
    x = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    assert torch.allclose(Adapter(8)(x), x)
    task = _task()
    towers = AdapterTowers(task, torch.device("cpu"), fixed_docs=True)
    q, d = towers.test()
    assert torch.allclose(q, task.test_q, atol=1e-6) and torch.allclose(d, task.test_d, atol=1e-6)
    assert len(towers.parameters()) == 2  # the document side is frozen


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


def _train(key: str, seed: int = 0, **kwargs: Any) -> tuple[dict[str, Any], AdapterTowers]:
    task = _task()
    towers = AdapterTowers(task, torch.device("cpu"), fixed_docs=key == "adore")
    info = train_strategy(
        STRATEGIES[key](**kwargs),
        towers,
        Schedule(task.n_train, 8, total_steps=12, lr=1e-2),
        seed=seed,
        device=torch.device("cpu"),
    )
    return info, towers


@pytest.mark.parametrize("key", ["random", "static", "star", "adore", "fn_aware"])
def test_same_seed_same_losses_and_the_global_rng_untouched(key: str) -> None:
    kwargs: dict[str, Any] = {"k": 10} if key == "adore" else {}
    if key in ("static", "star", "fn_aware"):
        kwargs = {"pool": 5, "range_max": 20}
    state = torch.get_rng_state()
    first, towers = _train(key, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    second, _ = _train(key, **kwargs)
    assert first["losses"] == second["losses"] and len(first["losses"]) == 12
    assert first["diverged_at_step"] is None
    assert torch.count_nonzero(towers.q_adapter.weight) > 0


def test_ance_and_ngame_refresh_on_schedule() -> None:
    ance, _ = _train("ance", pool=5, range_max=20, refresh_every=4)
    assert ance["refreshes"] == 2  # steps 4 and 8 after the first mining at step 0
    ngame, _ = _train("ngame", refresh_every=3, max_cluster_size=4)
    assert ngame["cluster_sizes"][:3] == [2, 4, 4]


def test_untrained_trains_nothing() -> None:
    info, towers = _train("untrained")
    assert info["losses"] == [] and torch.count_nonzero(towers.q_adapter.weight) == 0


def test_wrong_types_are_refused() -> None:
    task = _task()
    towers = AdapterTowers(task, torch.device("cpu"), fixed_docs=False)
    cpu = torch.device("cpu")
    with pytest.raises(TypeError, match="strategy must be a Strategy"):
        train_strategy("inbatch", towers, Schedule(48, 8, 2, 1e-2), seed=0, device=cpu)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schedule must be a Schedule"):
        train_strategy(STRATEGIES["inbatch"](), towers, {"lr": 1}, seed=0, device=cpu)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress must be"):
        train_strategy(
            STRATEGIES["inbatch"](),
            towers,
            Schedule(48, 8, 2, 1e-2),
            seed=0,
            device=cpu,
            progress=3,  # type: ignore[arg-type]
        )


# --------------------------------------------------------------------------------------------
# fit_and_score
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["inbatch", "adore"])
def test_fit_and_score_is_train_strategy_then_the_test_metrics(key: str) -> None:
    kwargs: dict[str, object] = {"k": 10} if key == "adore" else {}
    task, cpu = _task(), torch.device("cpu")
    schedule = Schedule(task.n_train, 8, total_steps=12, lr=1e-2)
    state = torch.get_rng_state()
    out = fit_and_score(STRATEGIES[key](**kwargs), task, schedule, seed=3, device=cpu)
    assert torch.equal(torch.get_rng_state(), state)
    towers = AdapterTowers(task, cpu, fixed_docs=key == "adore")
    info = train_strategy(STRATEGIES[key](**kwargs), towers, schedule, seed=3, device=cpu)
    expected = retrieval_metrics(*towers.test(), [[i] for i in range(task.n_test)])
    assert out["metrics"] == expected and set(expected) == set(METRICS)
    assert out["losses"] == info["losses"] and out["train_seconds"] >= 0.0
    assert out["eval_seconds"] >= 0.0


def test_fit_and_score_diverged_run_has_nan_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    def diverged(*args: object, **kwargs: object) -> dict[str, object]:
        return {"args": {}, "losses": [float("nan")], "diverged_at_step": 1}

    monkeypatch.setattr(training, "train_strategy", diverged)
    task = _task()
    out = fit_and_score(
        STRATEGIES["inbatch"](),
        task,
        Schedule(task.n_train, 8, 2, 1e-2),
        seed=0,
        device=torch.device("cpu"),
    )
    assert set(out["metrics"]) == set(METRICS)
    assert all(v != v for v in out["metrics"].values())  # NaN


def test_fit_and_score_finetune_restores_the_weights_even_on_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Encoder:
        def __init__(self) -> None:
            self.model = torch.nn.Linear(4, 4)

    encoder = Encoder()
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}

    def fails(*args: object, **kwargs: object) -> dict[str, object]:
        with torch.no_grad():
            encoder.model.weight.add_(1.0)
        encoder.model.train()
        raise RuntimeError("boom")

    monkeypatch.setattr(training, "FinetuneTowers", lambda task, enc, fixed_docs: object())
    monkeypatch.setattr(training, "train_strategy", fails)
    task = _task()
    schedule = Schedule(task.n_train, 8, 2, 2e-5, mode="finetune")
    with pytest.raises(RuntimeError, match="boom"):
        fit_and_score(
            STRATEGIES["inbatch"](),
            task,
            schedule,
            seed=0,
            device=torch.device("cpu"),
            encoder=encoder,
        )
    after = encoder.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not encoder.model.training


def test_fit_and_score_refuses_bad_input() -> None:
    task, cpu = _task(), torch.device("cpu")
    adapter = Schedule(task.n_train, 8, 2, 1e-2)
    finetune = Schedule(task.n_train, 8, 2, 2e-5, mode="finetune")
    inbatch = STRATEGIES["inbatch"]()
    with pytest.raises(ValueError, match="fit_and_score: finetune mode needs an encoder"):
        fit_and_score(inbatch, task, finetune, seed=0, device=cpu)
    with pytest.raises(TypeError, match="fit_and_score: strategy must be a Strategy"):
        fit_and_score("inbatch", task, adapter, seed=0, device=cpu)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fit_and_score: schedule must be a Schedule"):
        fit_and_score(inbatch, task, {"lr": 1}, seed=0, device=cpu)  # type: ignore[arg-type]
