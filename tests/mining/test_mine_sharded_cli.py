"""``posneg mine --index sharded``: two gloo ranks write the file one process writes, each rank
encoding only its part (the one-process checks and the data are in test_pipeline.py).

The ranks are spawned processes that set torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and call the pipeline and the command, which
join the process group themselves (:func:`posneg.mining.pipeline.init_distributed`). The
encoder is the fake trigram encoder of test_mine_cli.py: per-text deterministic, so the two
layouts see the same embeddings and the search (exact in both) must agree byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from test_mine_cli import FakeEncoder, _encoder
from test_pipeline import config, distinct_texts, make_files

import posneg.cli.mine as mine_command
from cli_helpers import run_main
from gloo_kit import run_ranks
from posneg._io import InputError
from posneg.mining import pipeline
from posneg.mining.sharded import shard_bounds

DEADLINE_S = 90.0
TEARDOWN_GRACE_S = 10.0


def test_command_accepts_index_sharded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_files(tmp_path)
    monkeypatch.setattr(
        mine_command, "ENCODER_FACTORY", lambda model, **kw: _encoder(FakeEncoder())
    )
    argv = ["mine", "--queries", str(files[0]), "--corpus", str(files[1]), "--num-negatives", "3",
            "--shard-size", "7", "--quiet"]  # fmt: skip
    for index in ("exact", "sharded"):
        code, _, err = run_main([*argv, "--out", str(tmp_path / f"{index}.jsonl"),
                                 "--index", index], capsys)  # fmt: skip
        assert code == 0, err
    assert (tmp_path / "sharded.jsonl").read_bytes() == (tmp_path / "exact.jsonl").read_bytes()


# ---------------------------------------------------------------------------------------------
# two gloo ranks
# ---------------------------------------------------------------------------------------------


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))  # fmt: skip
    root = Path(tmp)
    files = (root / "q.jsonl", root / "c.jsonl")
    try:
        lib = FakeEncoder()
        summary = pipeline.mine_files(
            config(files, root / "ranks" / "lib.jsonl", output_format="full", sampling="softmax"
                   , index="sharded"),
            encoder=_encoder(lib),
        )  # fmt: skip
        cmd: list[FakeEncoder] = []

        def factory(model: str, **kw: Any) -> Any:
            cmd.append(FakeEncoder())
            return _encoder(cmd[-1])

        mine_command.ENCODER_FACTORY = factory
        from posneg import cli

        argv = ["mine", "--queries", str(files[0]), "--corpus", str(files[1]), "--out",
                str(root / "ranks" / "cmd.jsonl"), "--format", "nway", "--num-negatives", "3",
                "--shard-size", "7", "--index", "sharded", "--cache-dir", str(root / "kept"),
                "--device", "cpu", "--quiet"]  # fmt: skip
        try:
            cli.main(argv)
            code = 0
        except SystemExit as exc:
            code = 0 if exc.code is None else int(exc.code)
        result = {"lib_seen": lib.seen, "cmd_seen": cmd[0].seen if cmd else None, "code": code,
                  "sha": summary.output_sha256, "rows": summary.rows,
                  "ranks": summary.config.get("ranks")}  # fmt: skip
        partial = root / f"rank{rank}.part"
        partial.write_text(json.dumps(result))
        os.replace(partial, root / f"rank{rank}.json")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn(world: int, tmp: Path) -> list[dict[str, Any]]:
    results = [tmp / f"rank{r}.json" for r in range(world)]
    run_ranks(_worker, world, tmp, results, deadline_s=DEADLINE_S, grace_s=TEARDOWN_GRACE_S)
    return [json.loads(f.read_text()) for f in results]


def _split(texts: Sequence[str], world: int) -> list[list[str]]:
    return [list(texts[slice(*shard_bounds(len(texts), world, r))]) for r in range(world)]


def test_two_gloo_ranks_write_the_one_process_file(tmp_path: Path) -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    files = make_files(tmp_path)
    (tmp_path / "ranks").mkdir()
    results = spawn(2, tmp_path)

    one = tmp_path / "one"
    pipeline.mine_files(
        config(files, one / "lib.jsonl", output_format="full", sampling="softmax"),
        encoder=_encoder(FakeEncoder()),
    )
    pipeline.mine_files(config(files, one / "cmd.jsonl", output_format="nway"),
                        encoder=_encoder(FakeEncoder()))  # fmt: skip
    for name in ("lib.jsonl", "cmd.jsonl"):
        assert (tmp_path / "ranks" / name).read_bytes() == (one / name).read_bytes(), name
        assert pipeline.summary_matches(tmp_path / "ranks" / name)
    # each rank encoded only its part of the corpus and of the queries still to encode
    corpus, fresh = distinct_texts(files)
    for key in ("lib_seen", "cmd_seen"):
        want = [c + q for c, q in zip(_split(corpus, 2), _split(fresh, 2), strict=True)]
        assert [sorted(r[key]) for r in results] == [sorted(w) for w in want]
    # every rank returns rank 0's summary; the default cache is gone, the kept one per rank
    assert results[0]["sha"] == results[1]["sha"] and results[0]["rows"] == results[1]["rows"]
    assert [r["ranks"] for r in results] == [2, 2] and [r["code"] for r in results] == [0, 0]
    assert not (tmp_path / "ranks" / "lib.jsonl.cache").exists()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["rank0", "rank1"]
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == [
        "cmd.jsonl", "cmd.jsonl.summary.json", "lib.jsonl", "lib.jsonl.summary.json"]  # fmt: skip


def test_default_cache_may_hold_rank_folders_of_a_killed_sharded_run(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    kept = tmp_path / "kept"
    pipeline.mine_files(config(files, tmp_path / "a.jsonl", cache_dir=kept),
                        encoder=_encoder(FakeEncoder()))  # fmt: skip
    cache = tmp_path / "b.jsonl.cache"  # what killed runs of both layouts leave behind
    shutil.copytree(kept, cache / "rank1")
    shutil.copytree(kept, cache, dirs_exist_ok=True)
    fake = FakeEncoder()
    pipeline.mine_files(config(files, tmp_path / "b.jsonl"), encoder=_encoder(fake))
    assert fake.seen == []  # the top-level shards were reused
    assert not cache.exists()  # and every rank folder was removed with them

    shutil.copytree(kept, cache / "rank0")
    (cache / "rank0" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"--out: .*holds files posneg did not write"):
        pipeline.mine_files(config(files, tmp_path / "b.jsonl"), encoder=_encoder(FakeEncoder()))
    assert (cache / "rank0" / "notes.txt").is_file()
