"""`posneg bench mixing`: reports, determinism, ECE, one-line errors; tiny runs on a small .npz."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, run_main
from posneg import cli
from posneg.bench import mixing
from posneg.bench._classifier import corrupted_sets
from posneg.bench._harness import UsageError
from posneg.bench._models1d import (
    MNIST1D_EPOCHS,
    SequenceData,
    SmallCNN1d,
    not_for_sequences,
    sequence_data,
)
from posneg.bench.mixing import BenchConfig, expected_calibration_error, run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST_CORRUPTIONS = ("gaussian_noise", "jpeg_compression")


def _write_npz(path: Path, *, n_per_class: int = 16, side: int = 12) -> Path:
    """Three classes of 12x12 uint8 images (N, H, W): a horizontal bar, a vertical bar, a box."""
    rng = np.random.default_rng(0)
    imgs, labels = [], []
    for c in range(3):
        for _ in range(n_per_class):
            img = rng.integers(0, 40, size=(side, side))
            r = int(rng.integers(3, side - 3))
            if c == 0:
                img[r - 1 : r + 1, 2:-2] = 255
            elif c == 1:
                img[2:-2, r - 1 : r + 1] = 255
            else:
                img[3:-3, 3:-3] = 200
            imgs.append(img)
            labels.append(c)
    np.savez(path, X=np.asarray(imgs, dtype=np.uint8), y=np.asarray(labels))
    return path


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_npz(tmp_path_factory.mktemp("data") / "bars.npz")


def _cfg(npz: Path, out: Path, **kw: object) -> BenchConfig:
    base: dict[str, object] = {
        "techniques": ("none", "mixup"),
        "epochs": 1,
        "batch_size": 16,
        "seeds": 1,
        "device": "cpu",
        "data": str(npz),
        "corruptions": FAST_CORRUPTIONS,
        "out": str(out),
        "quiet": True,
    }
    base.update(kw)
    return BenchConfig(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------


def test_run_writes_reports_that_parse(npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    techniques = ("none", "mixup:alpha=0.4", "cutmix", "fmix", "resizemix", "randaugment")
    result = run(_cfg(npz, out, techniques=(*techniques, "corruptions:dataset=xray")))
    payload = json.loads((out / "results.json").read_text())
    cfg = payload["config"]
    assert cfg["techniques"][1] == "mixup:alpha=0.4"
    assert cfg["seed_list"] == [0]
    assert cfg["n_train"] + cfg["n_test"] == 48
    assert cfg["image_shape"] == [1, 12, 12]
    assert cfg["data_note"] == "uint8 pixels / 255"
    assert payload["environment"]["torch"] == torch.__version__
    runs = payload["results"]["runs"]
    assert len(runs) == 7
    for r in runs:
        assert 0.0 <= r["clean_accuracy"] <= 1.0
        assert 0.0 <= r["ece"] <= 1.0
        assert len(r["corrupted_accuracy"]) == 5
        assert set(r["corrupted_accuracy_per_corruption"]) == set(FAST_CORRUPTIONS)
        assert len(r["epoch_losses"]) == 1 and np.isfinite(r["final_loss"])
    assert runs[0]["module"] is None
    assert "alpha=0.4" in runs[1]["module"] and "num_classes=3" in runs[1]["module"]
    assert "chestmnist" in runs[6]["module"]  # the xray alias resolves to ChestMNIST
    assert set(payload["results"]["gaps"]) == {f"{t} - none" for t in cfg["techniques"][1:]}
    md = (out / "results.md").read_text()
    assert "| mixup:alpha=0.4 |" in md and "sev 5 (%)" in md and "ECE" in md
    assert (out / "accuracy_vs_severity.png").read_bytes()[:8] == PNG_MAGIC
    assert result["report"] == out / "results.md"
    assert not list(out.glob(".*.tmp"))


def test_defaults_cover_every_technique() -> None:
    assert mixing.DEFAULT_TECHNIQUES == (
        "none",
        "mixup",
        "cutmix",
        "fmix",
        "resizemix",
        "randaugment",
        "corruptions",
    )
    assert BenchConfig().techniques == mixing.DEFAULT_TECHNIQUES
    assert "mixing" in cli.BENCHES


def test_cli_quiet_prints_the_report_path(
    npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _bench(npz, tmp_path / "out", "-t", "none", "--corruption", "pixelate")
    code, out, _ = run_main(argv, capsys)
    assert code == 0
    assert out.strip() == str(tmp_path / "out" / "results.md")


# --------------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------------


def _metrics(result: dict[str, object]) -> list[tuple[object, ...]]:
    runs = result["runs"]
    assert isinstance(runs, list)
    return [
        (r["clean_accuracy"], r["ece"], tuple(r["corrupted_accuracy"]), tuple(r["epoch_losses"]))
        for r in runs
    ]


def test_same_seed_same_metrics_and_global_rng_untouched(npz: Path, tmp_path: Path) -> None:
    techniques = ("fmix", "corruptions")
    state = torch.get_rng_state()
    first = run(_cfg(npz, tmp_path / "a", epochs=2, techniques=techniques))
    assert torch.equal(torch.get_rng_state(), state)
    second = run(_cfg(npz, tmp_path / "b", epochs=2, techniques=techniques))
    assert _metrics(first) == _metrics(second)
    other = run(_cfg(npz, tmp_path / "c", epochs=2, techniques=techniques, first_seed=1))
    assert [m[3] for m in _metrics(other)] != [m[3] for m in _metrics(first)]


def test_threads_restored(npz: Path, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    run(_cfg(npz, tmp_path, techniques=("none",), threads=1))
    assert torch.get_num_threads() == before


def test_corrupted_test_sets_are_fixed() -> None:
    x = torch.rand(6, 1, 12, 12)
    a = corrupted_sets(x, ("gaussian_noise", "motion_blur"), torch.device("cpu"))
    b = corrupted_sets(x, ("gaussian_noise", "motion_blur"), torch.device("cpu"))
    assert list(a) == [(n, s) for n in ("gaussian_noise", "motion_blur") for s in range(1, 6)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a[("gaussian_noise", 1)], x)


# --------------------------------------------------------------------------------------------
# expected calibration error
# --------------------------------------------------------------------------------------------


def _naive_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Guo et al. (2017): bins (b/M, (b+1)/M], weighted |accuracy - mean confidence|."""
    n = len(labels)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = []
        for i in range(n):
            conf = float(probs[i].max())
            if (lo < conf <= hi) or (b == 0 and conf == 0.0):
                members.append(i)
        if not members:
            continue
        acc = sum(int(probs[i].argmax() == labels[i]) for i in members) / len(members)
        conf_mean = sum(float(probs[i].max()) for i in members) / len(members)
        total += len(members) / n * abs(acc - conf_mean)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_ece_matches_naive_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(200, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=200)
    got = expected_calibration_error(torch.as_tensor(probs), torch.as_tensor(labels))
    assert got == pytest.approx(_naive_ece(probs, labels), abs=1e-12)


def test_ece_perfectly_calibrated_is_zero() -> None:
    # confidence 0.8 for all 10 samples, exactly 8 right; 5 samples at 1.0, all right
    probs = torch.tensor([[0.8, 0.2]] * 10 + [[1.0, 0.0]] * 5, dtype=torch.float64)
    labels = torch.tensor([0] * 8 + [1] * 2 + [0] * 5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_known_case_and_bin_edges() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
    # |1 - 0.9| / 2 + |0 - 0.6| / 2
    assert expected_calibration_error(probs, torch.tensor([0, 1])) == pytest.approx(0.35)
    # always wrong, always confident: ECE = mean confidence
    probs = torch.tensor([[0.3, 0.7], [0.95, 0.05]])
    assert expected_calibration_error(probs, torch.tensor([0, 1])) == pytest.approx(0.825)
    # a confidence exactly on an edge (2/3 = 10/15) joins the lower bin, as in the naive loop
    probs = torch.tensor([[2 / 3, 1 / 3], [0.7, 0.3]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(
        _naive_ece(probs.numpy(), labels.numpy()), abs=1e-12
    )


def test_ece_bad_shapes() -> None:
    with pytest.raises(ValueError, match="probs must be"):
        expected_calibration_error(torch.rand(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(torch.rand(4, 2), torch.zeros(4, dtype=torch.long), n_bins=0)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def test_loaders_stay_importable_from_the_bench() -> None:
    from posneg.data import images

    assert mixing.load_image_digits is images.load_image_digits
    assert mixing.load_image_npz is images.load_image_npz
    assert mixing.ImageData is images.ImageData


def test_demo_returns_a_summary(npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mixing, "DEMO_CONFIG", _cfg(npz, tmp_path / "ignored"))
    summary = mixing.demo(tmp_path / "demo")
    assert summary.family == "mixing"
    assert summary.report == tmp_path / "demo" / "results.md" and summary.report.exists()
    assert [r[0] for r in summary.rows] == ["none", "mixup"]


# --------------------------------------------------------------------------------------------
# errors: one line, exit code 2, no traceback
# --------------------------------------------------------------------------------------------


def _bench(npz: Path, out: Path, *extra: str) -> list[str]:
    return [
        "bench",
        "mixing",
        "--data",
        str(npz),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--quiet",
        *extra,
    ]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["-t", "nope"], ["unknown technique 'nope'"]),
        (["-t", "mixup:alpha=-1"], ["--technique 'mixup:alpha=-1'", "alpha"]),
        (["-t", "cutmix:alpha=0"], ["--technique 'cutmix:alpha=0'", "alpha"]),
        (["-t", "fmix:decay_power=-2"], ["--technique 'fmix:decay_power=-2'", "decay_power"]),
        (["-t", "randaugment:magnitude=99"], ["randaugment:magnitude=99", "magnitude"]),
        (["-t", "corruptions:dataset=foo"], ["corruptions:dataset=foo", "dataset"]),
        (["-t", "mixup:bogus=1"], ["mixup:bogus=1", "bogus"]),
        (["-t", "mixup:num_classes=3"], ["num_classes is set by the bench"]),
        (["-t", "none:alpha=1"], ["'none' takes no arguments"]),
        (["-t", "mixup:alpha"], ["expected name=value"]),
        (["-t", "mixup", "-t", "mixup"], ["'mixup' given twice"]),
        (["-b", "1"], ["--batch-size", ">= 2"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--lr", "-1"], ["--lr"]),
        (["--test-fraction", "1.5"], ["--test-fraction"]),
        (["--corruption", "fog"], ["--corruption", "'fog'"]),
        (["--corruption", "gamma_corr_up"], ["--corruption", "not a corruption of dermamnist"]),
        (["--corruption-dataset", "mri"], ["--corruption-dataset", "'mri'"]),
    ],
)
def test_bad_values_are_one_line(
    npz: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    fragments: list[str],
) -> None:
    code, _, err = run_main(_bench(npz, tmp_path / "out", *extra), capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "out" / "results.json").exists()


def test_missing_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(_bench(tmp_path / "missing.npz", tmp_path / "out"), capsys)
    assert_one_line_error(code, err, "--data", "missing.npz")


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"X": np.zeros((20, 8, 8))}, "'y'"),
        ({"X": np.zeros((20, 64)), "y": np.arange(20) % 2}, "(N, C, H, W)"),
        ({"X": np.zeros((20, 4, 4)), "y": np.arange(20) % 2}, "at least 8x8"),
    ],
)
def test_bad_data_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arrays: dict[str, np.ndarray],
    fragment: str,
) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)  # type: ignore[arg-type]
    code, _, err = run_main(_bench(bad, tmp_path / "out"), capsys)
    assert_one_line_error(code, err, "--data", fragment)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda(npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(_bench(npz, tmp_path / "out", "--device", "cuda"), capsys)
    assert_one_line_error(code, err, "--device")


def test_usage_error_from_python(npz: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--epochs"):
        run(_cfg(npz, tmp_path, epochs=0))


def test_bad_spec_in_a_fresh_process(npz: Path, tmp_path: Path) -> None:
    """The real entry point: exit code 2 and one stderr line, no traceback."""
    argv = _bench(npz, tmp_path / "out", "-t", "mixup:alpha=-1")
    proc = subprocess.run(
        [sys.executable, "-m", "posneg.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(proc.returncode, proc.stderr, "alpha")
    assert proc.stdout == ""


# --------------------------------------------------------------------------------------------
# sequences: --dataset mnist1d (a small synthetic stand-in keeps these fast)
# --------------------------------------------------------------------------------------------


def _sequences(n_per_class: int = 12, length: int = 24) -> SequenceData:
    """Three classes of (1, L) sequences: a bump early, a bump late, a dip (plus noise)."""
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for c in range(3):
        for _ in range(n_per_class):
            x = rng.normal(scale=0.1, size=length)
            at = int(rng.integers(2, length // 2 - 2)) + (length // 2 if c == 1 else 0)
            x[at : at + 3] += -1.0 if c == 2 else 1.0
            xs.append(x)
            ys.append(c)
    x, y = np.asarray(xs), np.asarray(ys)
    test = np.arange(len(y)) % 4 == 0
    return sequence_data("toy sequences", x[~test], y[~test], x[test], y[test], note="toy")


@pytest.fixture
def seq(monkeypatch: pytest.MonkeyPatch) -> SequenceData:
    data = _sequences()
    monkeypatch.setattr(mixing, "load_mnist1d", lambda: data)
    return data


def _seq_cfg(out: Path, **kw: object) -> BenchConfig:
    base: dict[str, object] = {
        "dataset": "mnist1d",
        "techniques": ("none", "mixup", "fmix"),
        "epochs": 2,
        "batch_size": 8,
        "seeds": 1,
        "device": "cpu",
        "out": str(out),
        "quiet": True,
    }
    base.update(kw)
    return BenchConfig(**base)  # type: ignore[arg-type]


def test_sequences_run_the_1d_techniques_and_skip_the_image_ones(
    seq: SequenceData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    techniques = ("none", "mixup", "cutmix", "fmix:per_sample=True", "resizemix", "randaugment")
    result = run(_seq_cfg(out, techniques=techniques, seeds=2))
    payload = json.loads((out / "results.json").read_text())
    cfg = payload["config"]
    assert cfg["techniques"] == ["none", "mixup", "cutmix", "fmix:per_sample=True", "resizemix"]
    assert cfg["image_shape"] == [1, 24] and cfg["corruptions"] == []
    assert cfg["model"] == mixing.MODEL_1D
    assert set(result["skipped"]) == {"randaugment"}
    assert "2-D image operations" in result["skipped"]["randaugment"]
    runs = payload["results"]["runs"]
    assert [r["technique"] for r in runs] == [t for t in cfg["techniques"] for _ in range(2)]
    for r in runs:
        assert 0.0 <= r["clean_accuracy"] <= 1.0 and 0.0 <= r["ece"] <= 1.0
        assert r["corrupted_accuracy_per_corruption"] == {}
    md = (out / "results.md").read_text()
    assert "| clean acc (%) | ECE | CPU s / run |" in md and "sev 1" not in md
    assert "Skipped on sequences" in md and "- randaugment: RandAugment's" in md
    assert "- mixup - none: accuracy" in md and "ECE" in md
    assert (out / "accuracy_ece.png").read_bytes()[:8] == PNG_MAGIC
    assert not (out / "accuracy_vs_severity.png").exists()


def test_sequences_default_epochs_and_digits_default_unchanged(
    seq: SequenceData, tmp_path: Path
) -> None:
    result = run(_seq_cfg(tmp_path / "s", techniques=("none",), epochs=None, batch_size=32))
    assert result["config"]["epochs"] == MNIST1D_EPOCHS
    assert len(result["runs"][0]["epoch_losses"]) == MNIST1D_EPOCHS
    cfg, _ = mixing._validate(BenchConfig())
    assert cfg.epochs == 12  # digits: today's default


def test_sequences_same_seed_same_metrics(seq: SequenceData, tmp_path: Path) -> None:
    state = torch.get_rng_state()
    first = run(_seq_cfg(tmp_path / "a", techniques=("fmix", "mixup")))
    assert torch.equal(torch.get_rng_state(), state)
    second = run(_seq_cfg(tmp_path / "b", techniques=("fmix", "mixup")))
    assert _metrics(first) == _metrics(second)


def test_only_image_techniques_on_sequences_is_an_error(seq: SequenceData, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--technique: none of randaugment, corruptions applies"):
        run(_seq_cfg(tmp_path, techniques=("randaugment", "corruptions")))


def test_small_cnn_1d() -> None:
    model = SmallCNN1d(2, 5, mean=1.0, std=2.0)
    assert model(torch.rand(3, 2, 40)).shape == (3, 5)
    assert model(torch.rand(3, 2, 7)).shape == (3, 5)  # any length: global average pool
    assert not_for_sequences("fmix") is None and not_for_sequences("mixup") is None
    assert not_for_sequences("cutmix") is None and not_for_sequences("resizemix") is None
    assert "2-D" in str(not_for_sequences("corruptions"))


def test_mnist1d_as_bench_sequences(tmp_path: Path) -> None:
    pytest.importorskip("mnist1d")
    from posneg.bench._models1d import load_mnist1d

    data = load_mnist1d()
    assert data.x_train.shape == (4000, 1, 40) and data.x_test.shape == (1000, 1, 40)
    assert data.n_classes == 10 and data.image_shape == (1, 40)
    assert abs(data.mean) < 0.05 and 0.9 < data.std < 1.1  # the generator standardised it


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--dataset", "mnist2d"], ["--dataset", "unknown data set 'mnist2d'", "digits, mnist1d"]),
        (["--dataset", "mnist1d"], ["--dataset", "mnist1d and --data"]),
    ],
)
def test_bad_dataset_is_one_line(
    npz: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    fragments: list[str],
) -> None:
    code, _, err = run_main(_bench(npz, tmp_path / "out", *extra), capsys)
    assert_one_line_error(code, err, *fragments)


def test_mnist1d_from_the_cli(
    seq: SequenceData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["bench", "mixing", "--dataset", "mnist1d", "-t", "none", "-t", "randaugment", "-q"]
    code, stdout, _ = run_main([*argv, "--epochs", "1", "--out", str(out)], capsys)
    assert code == 0 and stdout.strip() == str(out / "results.md")
    assert "Skipped on sequences" in (out / "results.md").read_text()
