"""Ranks agree: rank 0 decides where a run resumes and every rank follows, on one node or two."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from llm_assets_tests.training.conftest import TinyData, tiny_config

AGREE = """
import json, sys
from pathlib import Path
from llm_assets.training.checkpoints import choose_resume
from llm_assets.training.distributed import Distributed, decided_by_main

dist = Distributed.from_env()
# Each rank looks at its own view of the storage; rank 1's has not caught up (shows no checkpoint).
local = choose_resume(Path(sys.argv[1 + dist.rank]), 16)
agreed = decided_by_main(dist, "cpu", local.to_json())
seen = {"rank": dist.rank, "local": local.step, "agreed": agreed["step"], "dir": agreed["run_dir"]}
Path(sys.argv[3], f"rank{dist.rank}.json").write_text(json.dumps(seen))
import torch.distributed
torch.distributed.destroy_process_group()  # a live gloo group can abort the interpreter at exit
"""


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_PIPES_CONTEXT"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_rank_takes_rank_0s_resume_decision(trained, tmp_path: Path) -> None:
    seen_by_rank_0, seen_by_rank_1 = tmp_path / "shared", tmp_path / "lagging"
    shutil.copytree(trained.result.run_dir / "checkpoint-8", seen_by_rank_0 / "checkpoint-8")
    seen_by_rank_1.mkdir()
    script = tmp_path / "agree.py"
    script.write_text(AGREE)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(seen_by_rank_0), str(seen_by_rank_1), str(tmp_path)],
        env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["local"] for r in lines] == [8, 0]  # the two views differ ...
    assert [r["agreed"] for r in lines] == [8, 8]  # ... and both ranks resume where rank 0 decided
    assert {r["dir"] for r in lines} == {str(seen_by_rank_0)}


def _node(node_rank: int, port: int, data: TinyData, checkpoints: Path, config_json: str, run_id: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
        "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", run_id,
        "--rdzv_conf", f"is_host={'true' if node_rank == 0 else 'false'}", "--local_addr", "127.0.0.1",
        "--max_restarts", "0",
        "-m", "llm_assets.training.launch", "--dataset-dir", str(data.dataset_dir),
        "--tokenizer-dir", str(data.tokenizer_dir), "--checkpoint-dir", str(checkpoints),
        "--device", "cpu", "--config-json", config_json,
    ]  # fmt: skip
    return subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def kill_node(launcher: subprocess.Popen) -> None:
    """SIGKILL a torchrun launcher and its workers (torchrun starts each worker in its own session)."""
    children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    for pid in [int(c) for c in children]:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.communicate(timeout=30)


def test_two_nodes_killed_mid_run_resume_from_the_same_checkpoint(tiny_data: TinyData, tmp_path: Path) -> None:
    checkpoints = tmp_path / "shared-checkpoints"  # storage both nodes mount
    config = tiny_config(max_steps=40, save_steps=4, logging_steps=4, batch_size=4, sample_prompts=[])
    port = free_port()
    nodes = [_node(rank, port, tiny_data, checkpoints, config.model_dump_json(), "first") for rank in (0, 1)]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list(checkpoints.glob("runs/*/checkpoint-8/trainer_state.json")):
            assert all(n.poll() is None for n in nodes), nodes[0].communicate()[0][-3000:]
            time.sleep(0.05)
        kill_node(nodes[1])  # node 1 dies mid-run: its launcher and its worker
        output, _ = nodes[0].communicate(timeout=180)  # node 0 loses its peer and stops
        assert nodes[0].returncode != 0, output[-3000:]
    finally:
        for node in nodes:
            if node.poll() is None:
                kill_node(node)
    saved = sorted(int(p.parent.name.split("-")[1]) for p in checkpoints.glob("runs/*/checkpoint-*/trainer_state.json"))
    assert saved and max(saved) < 40

    port = free_port()
    again = [_node(rank, port, tiny_data, checkpoints, config.model_dump_json(), "second") for rank in (0, 1)]
    try:
        outputs = [n.communicate(timeout=300)[0] for n in again]
    finally:
        for node in again:
            if node.poll() is None:
                kill_node(node)
    for node, output in zip(again, outputs):
        assert node.returncode == 0, output[-3000:]
    reports = sorted(re.findall(r"rank (\d) of 2: resumed from step (\d+), finished at step (\d+)", "".join(outputs)))
    assert len(reports) == 2
    (_, resumed_0, finished_0), (_, resumed_1, finished_1) = reports
    assert resumed_0 == resumed_1 and int(resumed_0) == max(saved) and finished_0 == finished_1 == "40"
