"""`posneg bench contrastive`: reports, determinism, one-line errors; tiny runs on a small .npz."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, run_main
from posneg.bench import contrastive
from posneg.bench._harness import UsageError
from posneg.bench._models import Conv1dEncoder, Encoder, encoder_for
from posneg.bench._probe import REFERENCE
from posneg.bench.contrastive import BenchConfig, run
from posneg.data import load_digits
from posneg.data.views import augment_sequences, view_fn

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_npz(path: Path, *, n_per_class: int = 50, n_classes: int = 3, dim: int = 8) -> Path:
    """Well-separated Gaussian blobs: 150 samples, 8 features, 3 classes."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 3.0, size=(n_classes, dim))
    x = np.concatenate([c + rng.normal(size=(n_per_class, dim)) for c in centers])
    y = np.repeat(np.arange(n_classes), n_per_class)
    np.savez(path, X=x.astype(np.float32), y=y)
    return path


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_npz(tmp_path_factory.mktemp("data") / "blobs.npz")


def _cfg(npz: Path, out: Path, **kw: object) -> BenchConfig:
    base: dict[str, object] = {
        "objectives": ("nt_xent", "dcl"),
        "batch_sizes": (16,),
        "epochs": 1,
        "seeds": 1,
        "device": "cpu",
        "data": str(npz),
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
    result = run(_cfg(npz, out, batch_sizes=(16, 32), objectives=("nt_xent", "dcl", "supcon")))
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["objectives"] == ["nt_xent", "dcl", "supcon"]
    assert payload["config"]["seed_list"] == [0]
    assert payload["config"]["n_train"] + payload["config"]["n_test"] == 150
    assert payload["environment"]["torch"] == torch.__version__
    runs = payload["results"]["runs"]
    assert len(runs) == 3 * 2
    for r in runs:
        assert 0.0 <= r["linear_probe"] <= 1.0 and 0.0 <= r["knn"] <= 1.0
        assert len(r["epoch_losses"]) == 1
    agg = {(a["objective"], a["batch_size"]): a for a in payload["results"]["aggregate"]}
    assert agg[("supcon", 16)]["supervised"] is True
    assert agg[("dcl", 16)]["supervised"] is False
    assert set(payload["results"]["gaps"]) == {"dcl - nt_xent"}
    md = (out / "results.md").read_text()
    assert "supervised" in md and "raw input" in md and "| dcl |" in md
    for png in ("accuracy.png", "batch_sweep.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert result["report"] == out / "results.md"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary file


MOCHI = "mochi:num_hard=16,num_mix=8,num_query_mix=4"


def test_single_batch_size_writes_no_sweep_plot(npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(_cfg(npz, out, objectives=("cacr", "amcl:num_heads=1", "moco", MOCHI, "ft")))
    assert (out / "accuracy.png").exists()
    assert not (out / "batch_sweep.png").exists()
    runs = json.loads((out / "results.json").read_text())["results"]["runs"]
    assert "num_heads=1" in runs[1]["loss_module"]  # the spec reached the constructor
    assert "in_dim=128" in runs[1]["loss_module"]  # the bench sets the backbone width
    assert runs[2]["loss_module"].startswith("InfoNCELoss(")  # moco: InfoNCE + queue
    assert "num_hard=16" in runs[3]["loss_module"]
    assert runs[4]["loss_module"].startswith("FeatureTransform(")
    for r in runs:
        assert np.isfinite(r["final_loss"]) and r["diverged_at_epoch"] is None


def test_defaults_cover_the_in_batch_family() -> None:
    assert contrastive.DEFAULT_OBJECTIVES == (
        "info_nce", "nt_xent", "dcl", "dclw", "hcl", "cacr", "amcl", "supcon",
    )  # fmt: skip
    assert BenchConfig().objectives == contrastive.DEFAULT_OBJECTIVES


# --------------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------------


def _metrics(result: dict[str, object]) -> list[tuple[object, ...]]:
    runs = result["runs"]
    assert isinstance(runs, list)
    return [(r["linear_probe"], r["knn"], tuple(r["epoch_losses"])) for r in runs]


def test_same_seed_same_metrics_and_global_rng_untouched(npz: Path, tmp_path: Path) -> None:
    objectives = ("hcl", "amcl:num_heads=1", MOCHI)
    state = torch.get_rng_state()
    first = run(_cfg(npz, tmp_path / "a", epochs=2, objectives=objectives))
    assert torch.equal(torch.get_rng_state(), state)
    second = run(_cfg(npz, tmp_path / "b", epochs=2, objectives=objectives))
    assert _metrics(first) == _metrics(second)
    other = run(_cfg(npz, tmp_path / "c", epochs=2, objectives=objectives, first_seed=1))
    assert [m[2] for m in _metrics(other)] != [m[2] for m in _metrics(first)]


def test_threads_restored(npz: Path, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    run(_cfg(npz, tmp_path, objectives=("dcl",), threads=1))
    assert torch.get_num_threads() == before


# --------------------------------------------------------------------------------------------
# pieces
# --------------------------------------------------------------------------------------------


def test_image_views_are_per_sample_and_seeded() -> None:
    x = torch.rand(64, 64)
    a = contrastive.augment_images(x, (8, 8), generator=torch.Generator().manual_seed(3))
    b = contrastive.augment_images(x, (8, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    same = x[:1].expand(64, 64)
    views = contrastive.augment_images(same, (8, 8), generator=torch.Generator().manual_seed(0))
    assert len({tuple(v.tolist()) for v in views}) == 64  # every sample drew its own view


def test_shift_moves_pixels_with_zero_padding() -> None:
    img = torch.zeros(1, 8, 8)
    img[0, 3, 4] = 1.0
    x = img.reshape(1, 64).expand(200, 64)
    out = contrastive.augment_images(
        x,
        (8, 8),
        contrast=(1.0, 1.0),
        drop=0.0,
        noise=0.0,
        generator=torch.Generator().manual_seed(0),
    ).reshape(200, 8, 8)
    assert torch.all(out.sum(dim=(1, 2)) == 1.0)  # the pixel moved, it never vanished
    pos = {(int(r), int(c)) for r, c in (out == 1.0).nonzero()[:, 1:].tolist()}
    assert pos == {(3 + dr, 4 + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)}


def test_knn_accuracy_on_obvious_features() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    ytr = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    acc = contrastive.knn_accuracy(train, ytr, test, torch.tensor([0, 1]), k=1, n_classes=2)
    assert acc == 1.0
    wrong = contrastive.knn_accuracy(train, ytr, test, torch.tensor([1, 0]), k=1, n_classes=2)
    assert wrong == 0.0


def test_raw_digits_probe_is_high() -> None:
    data = load_digits()
    acc = contrastive.evaluate(lambda t: t, data, torch.device("cpu"))
    assert acc["linear_probe"] > 0.9 and acc["knn"] > 0.9


def test_demo_returns_a_summary(npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        contrastive, "DEMO_CONFIG", _cfg(npz, tmp_path / "ignored", objectives=("dcl",))
    )
    seq = BenchConfig(objectives=("nt_xent",), dataset="mnist1d", epochs=1, seeds=1)
    monkeypatch.setattr(contrastive, "DEMO_MNIST1D", replace(seq, batch_sizes=(1000,), quiet=True))
    summary = contrastive.demo(tmp_path / "demo")
    assert summary.family == "contrastive"
    assert summary.report == tmp_path / "demo" / "results.md" and summary.report.exists()
    names = [r[0] for r in summary.rows]
    assert names == ["dcl", "raw input (no training)", "nt_xent on MNIST-1D (1-D CNN, 4 epochs)"]
    assert (tmp_path / "demo" / "mnist1d" / "results.md").exists()


def test_demo_presets_are_small() -> None:
    assert contrastive.DEMO_MNIST1D.dataset == "mnist1d"
    assert contrastive.DEMO_MNIST1D.objectives == ("nt_xent",)
    assert contrastive.DEMO_MNIST1D.seeds == 1 and contrastive.DEMO_MNIST1D.epochs == 4


# --------------------------------------------------------------------------------------------
# --dataset mnist1d: the 1-D CNN, sequence views, the supervised reference
# --------------------------------------------------------------------------------------------


def test_conv1d_encoder_shapes_and_seeded_init() -> None:
    torch.manual_seed(0)
    a = Conv1dEncoder(40)
    torch.manual_seed(0)
    b = Conv1dEncoder(40)
    x = torch.randn(5, 40)
    a.eval(), b.eval()
    assert a.backbone(x).shape == (5, a.feat_dim) == (5, Encoder.FEAT_DIM)
    assert a(x).shape == (5, a.proj_dim)
    assert torch.equal(a(x), b(x))
    assert Conv1dEncoder(41).backbone(torch.randn(3, 41)).shape == (3, 128)


def test_encoder_and_view_follow_the_data() -> None:
    from posneg.data import load_mnist1d

    seq = load_mnist1d()
    assert isinstance(encoder_for(seq), Conv1dEncoder)
    assert type(encoder_for(load_digits())) is Encoder
    view = view_fn(seq)
    x = torch.as_tensor(seq.x_train[:4])
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(view(x, g1), seq.scaler(augment_sequences(x, generator=g2)))


def test_mnist1d_run_has_reference_and_raw_rows(tmp_path: Path) -> None:
    cfg = BenchConfig(
        objectives=("nt_xent",), dataset="mnist1d", batch_sizes=(1000,), epochs=1, seeds=1,
        device="cpu", out=str(tmp_path / "a"), quiet=True,
    )  # fmt: skip
    result = run(cfg)
    objs = [a["objective"] for a in result["aggregate"]]
    assert objs == ["nt_xent", REFERENCE]
    ref = result["aggregate"][1]
    assert ref["supervised"] and ref["batch_size"] == 1000
    conf = result["config"]
    assert conf["epochs"] == 1 and conf["data_name"] == "mnist1d"
    assert conf["n_train"] == 4000 and conf["n_test"] == 1000 and conf["n_features"] == 40
    assert conf["encoder"].startswith("1-D CNN") and conf["views"].startswith("MNIST-1D")
    assert all(r["steps"] == 4 for r in result["runs"])  # 1 epoch of 4 full batches
    md = Path(result["report"]).read_text()
    assert REFERENCE in md and "raw input" in md and "1 epochs per run" in md
    assert "the fixed MNIST-1D split" in md
    again = run(replace(cfg, out=str(tmp_path / "b")))  # same seed, same metrics
    for r1, r2 in zip(result["runs"], again["runs"], strict=True):
        assert (r1["linear_probe"], r1["knn"]) == (r2["linear_probe"], r2["knn"])


def test_default_epochs_per_dataset() -> None:
    assert contrastive.EPOCHS == {"digits": 30, "mnist1d": 12}
    assert contrastive._epochs(BenchConfig()) == 30
    assert contrastive._epochs(BenchConfig(dataset="mnist1d")) == 12
    assert contrastive._epochs(BenchConfig(dataset="mnist1d", epochs=3)) == 3


# --------------------------------------------------------------------------------------------
# errors: one line, exit code 2, no traceback
# --------------------------------------------------------------------------------------------


def _bench(npz: Path, out: Path, *extra: str) -> list[str]:
    return ["bench", "contrastive", "--data", str(npz), "--out", str(out), "--epochs", "1",
            "--quiet", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["-o", "nope"], ["unknown technique 'nope'"]),
        (["-o", "dcl:temperature=-1"], ["--objective 'dcl:temperature=-1'", "temperature"]),
        (["-o", "hcl:gamma=2"], ["--objective 'hcl:gamma=2'", "gamma"]),
        (["-o", "dcl:temperature"], ["expected name=value"]),
        (["-o", "dcl", "-o", "dcl"], ["'dcl' given twice"]),
        (["-o", "amcl:in_dim=3"], ["in_dim is set by the bench"]),
        (["-o", "mochi:num_hard=0"], ["--objective 'mochi:num_hard=0'", "num_hard"]),
        (["-b", "1"], ["--batch-size", ">= 2"]),
        (["-b", "5000"], ["--batch-size", "exceeds"]),
        (["-b", "16", "-b", "16"], ["--batch-size", "twice"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--lr", "-1"], ["--lr"]),
        (["--test-fraction", "1.5"], ["--test-fraction"]),
        (["--dataset", "mnist"], ["--dataset", "digits, mnist1d", "'mnist'"]),
        (["--dataset", "mnist1d"], ["--data", "--dataset mnist1d", "not both"]),
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


def test_bad_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((20, 3)))
    code, _, err = run_main(_bench(bad, tmp_path / "out"), capsys)
    assert_one_line_error(code, err, "--data", "'y'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda(npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(_bench(npz, tmp_path / "out", "--device", "cuda"), capsys)
    assert_one_line_error(code, err, "--device")


def test_usage_error_from_python(npz: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--epochs"):
        run(_cfg(npz, tmp_path, epochs=0))


def test_bad_spec_in_a_fresh_process(npz: Path, tmp_path: Path) -> None:
    """The real entry point: exit code 2 and one stderr line, no traceback."""
    argv = _bench(npz, tmp_path / "out", "-o", "dcl:temperature=0")
    proc = subprocess.run(
        [sys.executable, "-m", "posneg.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(proc.returncode, proc.stderr, "temperature")
    assert proc.stdout == ""


def test_old_ft_key_still_runs_as_feature_transform(npz: Path, tmp_path: Path) -> None:
    result = run(_cfg(npz, tmp_path, objectives=("ft",)))
    assert [r["objective"] for r in result["runs"]] == ["feature_transform"]
    assert result["config"]["objectives"] == ["feature_transform"]
