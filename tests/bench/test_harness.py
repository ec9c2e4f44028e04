"""The bench harness and report writer: spec parser over the registry, shared options, threads,
grid runner, the command built from a config, aggregation, paired differences and plots."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from posneg import registry
from posneg.bench import _harness as h
from posneg.bench import _report as rep
from posneg.bench import contrastive, imbalance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------


def test_parser_accepts_registry_keys_aliases_and_baselines() -> None:
    parser = h.SpecParser(
        "--technique", "technique", ("none", "smote", "feature_transform"), ("none",)
    )
    specs = parser.parse(["none", "smote:k_neighbors=3,kind=x,flag=true,v=none", "ft"])
    assert [s.key for s in specs] == ["none", "smote", "feature_transform"]
    assert dict(specs[1].kwargs) == {"k_neighbors": 3, "kind": "x", "flag": True, "v": None}
    assert parser.technique("none") is None
    assert parser.technique("smote") is registry.get("smote")
    assert parser.where(specs[0]) == "--technique 'none'"


@pytest.mark.parametrize(
    ("keys", "baselines", "match"),
    [
        (("nope",), (), "neither a registry key nor a declared baseline"),
        (("ft",), (), "alias"),
        (("dcl",), ("none",), "baseline 'none' is not in keys"),
    ],
)
def test_parser_refuses_keys_outside_the_registry(
    keys: tuple[str, ...], baselines: tuple[str, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        h.SpecParser("--x", "x", keys, baselines)


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        ([], "--objective: give at least one objective"),
        (["nope"], "unknown technique 'nope'"),
        (["dcl:temperature"], "expected name=value"),
        (["dcl:t=1,t=2"], "given twice in spec"),
        (["dcl", "dcl"], "--objective: 'dcl' given twice"),
        (["dcl", "DCL"], "--objective: 'dcl' given twice"),
    ],
)
def test_parser_errors_name_the_flag_or_spec(texts: list[str], match: str) -> None:
    with pytest.raises(h.UsageError, match=match):
        contrastive.PARSER.parse(texts)


def test_every_bench_key_is_a_registry_key_or_a_declared_baseline() -> None:
    for parser in (contrastive.PARSER, imbalance.PARSER):
        for key in parser.keys:
            assert key in parser.baselines or registry.get(key).key == key
    assert imbalance.PARSER.baselines == ("none", "random")
    assert contrastive.PARSER.baselines == ()
    assert contrastive.PARSER.parse(["ft"])[0].key == "feature_transform"  # old commands work


def test_build_reports_the_units_own_error() -> None:
    spec = contrastive.PARSER.parse(["dcl:temperature=-1"])[0]
    cls = registry.get("dcl").load()
    with pytest.raises(h.UsageError, match=r"^--objective 'dcl:temperature=-1': .*temperature"):
        h.build(cls, spec, contrastive.PARSER.where(spec))
    with pytest.raises(h.UsageError, match="in_dim is set by the bench \\(width\\)"):
        h.build(cls, h.Spec("dcl", {"in_dim": 3}), "w", forced={"in_dim": 4}, reason="width")
    built = h.build(cls, h.Spec("dcl", {}), "w", defaults={"temperature": 0.3})
    assert built.temperature == pytest.approx(0.3)


def test_available_keeps_baselines() -> None:
    assert imbalance.PARSER.available()[:2] == ("none", "random")


# --------------------------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------------------------


def test_threads_have_one_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    assert h.auto_threads(3) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)), raising=False)
    assert h.auto_threads(0) == 4
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0}, raising=False)
    assert h.auto_threads(0) == 1


def test_torch_threads_restores_on_failure() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), h.torch_threads(1, torch.device("cpu")) as n:
        assert n == 1 and torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_device_defaults_to_auto_everywhere_and_threads_accept_zero(tmp_path: Path) -> None:
    assert contrastive.BenchConfig().device == imbalance.BenchConfig().device == "auto"
    cfg = imbalance.BenchConfig(threads=0, out=str(tmp_path))
    h.check_common(cfg)  # 0 = automatic


@dataclass(frozen=True)
class _Cfg:
    seeds: int = 1
    first_seed: int = 0
    threads: int = 1
    out: str = "."


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (_Cfg(seeds=0), "--seeds: must be >= 1"),
        (_Cfg(first_seed=-1), "--first-seed: must be >= 0"),
        (_Cfg(threads=-1), "--threads: must be >= 0"),
        (_Cfg(out=__file__), "--out: .* exists and is not a folder"),
    ],
)
def test_check_common(cfg: _Cfg, match: str) -> None:
    with pytest.raises(h.UsageError, match=match):
        h.check_common(cfg)


def test_check_number_and_seed_list() -> None:
    with pytest.raises(h.UsageError, match=r"--f: must be in \(0, 0.5\); got 0.7"):
        h.check_number("--f", 0.7, low=0, high=0.5, closed="none")
    with pytest.raises(h.UsageError, match="--lr"):
        h.check_number("--lr", math.nan, low=0)
    h.check_number("--wd", 0.0, low=0.0)
    assert h.seed_list(_Cfg(seeds=3, first_seed=5)) == [5, 6, 7]


def test_resolve_device() -> None:
    assert h.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(h.UsageError, match="--device: unknown device"):
        h.resolve_device("toaster")


# --------------------------------------------------------------------------------------------
# grid and command
# --------------------------------------------------------------------------------------------


def test_grid_runs_in_order_and_counts_untaken_steps() -> None:
    seen: list[int] = []

    def one(job: int, tick: object) -> int:
        assert callable(tick)
        for _ in range(job):  # job 0 stops early, job 5 ticks past the end
            tick()
        seen.append(job)
        return 10 * job

    assert h.run_grid([0, 2, 5], one, describe=str, steps=3, quiet=True) == [0, 20, 50]
    assert seen == [0, 2, 5]
    assert h.run_grid(["a"], lambda j, t: j, describe=str, quiet=True) == ["a"]


@dataclass(frozen=True)
class _Toy:
    """Toy config.

    Attributes:
        names: spec names, repeatable. Default: a, b.
        size: the size, over
            two lines.
        data: a file.
        seeds: number of seeds.
        quiet: be quiet.
    """

    names: tuple[str, ...] = ("a", "b")
    size: int = 3
    data: str | None = None
    seeds: int = 1
    quiet: bool = False


def test_command_builds_the_config_from_options(tmp_path: Path) -> None:
    got: list[_Toy] = []

    def run(cfg: _Toy) -> dict[str, object]:
        got.append(cfg)
        return {"report": tmp_path / "results.md"}

    def finish(values: dict[str, object]) -> dict[str, object]:
        if values["data"] is not None and values["names"] is None:
            values["names"] = ("x",)
        return values

    cli = h.command(_Toy, run, doc="Toy bench.", flags={"names": ("--name", "-n")}, finish=finish)
    app = typer.Typer()
    app.command()(cli)
    runner = CliRunner()
    res = runner.invoke(app, ["-n", "c", "--name", "d", "--size", "4", "-q"])
    assert res.exit_code == 0, res.output
    assert got[-1] == _Toy(names=("c", "d"), size=4, quiet=True)
    assert res.output.strip() == str(tmp_path / "results.md")
    runner.invoke(app, [])
    assert got[-1] == _Toy()
    runner.invoke(app, ["--data", "f.npz"])
    assert got[-1] == _Toy(names=("x",), data="f.npz")
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "Toy bench." in text and "The size, over two lines." in text
    assert "Number of seeds (first-seed" in text  # the shared help


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

RUNS = [
    {"tech": t, "group": g, "seed": s, "acc": a, "time": 1.0, "kind": "k"}
    for (t, g, s, a) in [
        ("x", 1, 0, 0.5), ("x", 1, 1, 0.7), ("y", 1, 0, 0.4), ("y", 1, 1, 0.7),
        ("x", 2, 0, 0.9), ("y", 2, 0, math.nan),
    ]
]  # fmt: skip


def test_aggregate_and_paired() -> None:
    agg = rep.aggregate(
        RUNS, by=("tech", "group"), keep=("kind",), metrics=("acc",), means=("time",)
    )
    first = agg[0]
    assert (first["tech"], first["group"], first["kind"], first["seeds"]) == ("x", 1, "k", [0, 1])
    assert first["acc_mean"] == pytest.approx(0.6)
    assert first["acc_std"] == pytest.approx(math.sqrt(0.02))
    assert first["time_mean"] == 1.0
    diffs = rep.paired(RUNS, "x", "y", metric="acc", label="tech", group="group")
    assert [d["group"] for d in diffs] == [1, 2]
    assert (diffs[0]["wins"], diffs[0]["ties"], diffs[0]["losses"]) == (1, 1, 0)
    assert diffs[0]["diff_mean"] == pytest.approx(0.05)
    assert math.isnan(diffs[1]["diff_mean"])
    assert rep.pct_cell(0.912, 0.004, 1) == "91.2"
    assert rep.pct_cell(0.912, 0.004, 2) == "91.2 ± 0.4"
    assert rep.pp_cell(0.012, 0.003, 2) == "+1.2 ± 0.3"
    assert rep.pp_cell(math.nan, 0.0, 1) == "n/a"


def test_report_files_and_plots(tmp_path: Path) -> None:
    agg = rep.aggregate(RUNS, by=("tech", "group"), metrics=("acc",))
    cfg = rep.resolved_config(_Cfg(), seeds=[0, 1], device="cpu", threads=1, extra=3)
    assert cfg["seed_list"] == [0, 1] and cfg["torch_threads"] == 1 and cfg["extra"] == 3
    md = rep.write_report(
        tmp_path, title="t", config=cfg, results={"agg": agg}, header=["a"], rows=[["1"]], notes="n"
    )
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["config"]["resolved_device"] == "cpu"
    assert payload["environment"]["torch"] == torch.__version__
    assert "| a |" in md.read_text() and "## Environment" in md.read_text()
    for kind in ("bar", "point"):
        plot = rep.MetricPlot(
            "t", "tech", "group", [("acc", "accuracy")], kind=kind, baseline={"acc": 0.3}
        )
        assert plot.save(tmp_path / f"{kind}.png", agg).read_bytes().startswith(PNG_MAGIC)
    sweep = rep.sweep_plot(
        tmp_path / "s.png", agg, x="group", series="tech", metrics=[("acc", "a")], title="t"
    )
    assert sweep.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bar.png", "point.png", "results.json", "results.md", "s.png",
    ]  # fmt: skip  # no temporary file left


def test_harness_re_exports_the_spec_names() -> None:
    from posneg.bench import _specs

    for name in _specs.__all__:
        assert getattr(h, name) is getattr(_specs, name), name
        assert name in h.__all__, name
    assert issubclass(h.UsageError, ValueError)


def test_seeded_fixes_the_draws_and_restores_the_callers_state() -> None:
    cpu = torch.device("cpu")
    torch.manual_seed(123)
    with h.seeded(cpu, 7):
        first = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(123)
    with h.seeded(cpu, 7):
        assert torch.equal(torch.rand(3), first)
    with h.seeded(cpu):  # no seed: a fork, the caller's state is untouched
        torch.rand(5)
    assert torch.equal(torch.rand(3), after)


def test_publish_writes_report_and_plots_and_shows_unless_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drawn: list[Path] = []

    def plots(out: Path) -> list[Path]:
        drawn.append(out)
        return [out / "p.png"]

    kw: dict[str, Any] = {"title": "t", "config": {"a": 1}, "header": ["x"], "rows": [("1",)]}
    kw["plots"] = plots
    notes = ["setup, in results.md only", "", "second note"]
    got = rep.publish(tmp_path, results={"runs": []}, notes=notes, quiet=False, elapsed=1.0, **kw)
    assert got == {
        "runs": [],
        "report": tmp_path / "results.md",
        "plots": [tmp_path / "p.png"],
        "config": {"a": 1},
    }
    assert drawn == [tmp_path]
    md = (tmp_path / "results.md").read_text()
    assert "setup, in results.md only" in md and "second note" in md
    out = capsys.readouterr().out
    assert "second note" in out and "setup" not in out
    rep.publish(tmp_path, results={}, notes=notes, quiet=True, elapsed=1.0, **kw)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("bench", ["contrastive", "mixing", "imbalance"])
def test_data_given_a_folder_says_so(
    bench: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_helpers import run_main

    argv = ["bench", bench, "--data", str(tmp_path), "-q", "--out", str(tmp_path / "o")]
    code, out, err = run_main(argv, capsys)
    assert code == 2 and out == ""
    assert err.strip() == f"posneg: error: --data: {tmp_path} is a folder; give an .npz file"


def test_mean_std_with_nan_values_is_nan_not_an_error() -> None:
    assert all(math.isnan(v) for v in rep.mean_std([math.nan, math.nan, 1.0]))
    assert rep.mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))
