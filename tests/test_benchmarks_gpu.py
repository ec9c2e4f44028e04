"""benchmarks/gpu.py: without a CUDA device it says so and exits 0 (the GPU parts need one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_gpu_script_exits_0_without_cuda(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device found" in proc.stdout
    assert not (tmp_path / "out").exists()  # nothing measured, nothing written


def test_gpu_script_lists_every_part_with_a_timeout(tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu
    finally:
        sys.path.remove(str(SCRIPT.parent))
    table = gpu.parts(tmp_path)
    assert {"contrastive", "oversampling", "mining", "mixing", "augment", "tests"} <= set(table)
    assert set(table) <= set(gpu.ORDER)
    assert sum(limit for _, limit in table.values()) <= 8 * 60
    for cmd, _ in table.values():
        script = Path(cmd[1])
        assert cmd[1] == "-c" or script.exists(), script
