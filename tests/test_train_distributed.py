"""Two CPU processes under torchrun (gloo) reach the weights of one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from xai_pool import attach_stream, load_stream, train_stream
from xai_pool.train.distributed import DistInfo, env_world, resolve_device

from .conftest import TINY_SPEC, TinyCNN, free_port

REPO = Path(__file__).resolve().parents[1]

# Run by torchrun in each process, and imported by the test for the one-process reference.
WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from xai_pool import attach_stream, train_stream
    from tests.conftest import TINY_SPEC, TinyCNN
    from tests.test_train_core import colour_problem

    def train(out, per_process_batch):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        ca = attach_stream(TinyCNN(num_classes=4), spec=TINY_SPEC)
        train = DataLoader(TensorDataset(*colour_problem(64, 0)), batch_size=per_process_batch, shuffle=True)
        val = DataLoader(TensorDataset(*colour_problem(25, 1)), batch_size=5)  # uneven shards: 13 + 12
        history = train_stream(ca, train, val_loader=val, epochs=2, lr=0.5, out_dir=out, seed=7)
        return ca, history

    if __name__ == "__main__":
        ca, history = train(sys.argv[1], int(sys.argv[2]))
        if os.environ["RANK"] == "0":
            torch.save(ca.stream.state_dict(), f"{sys.argv[1]}/final_stream.pt")
            with open(f"{sys.argv[1]}/returned_history.json", "w") as handle:
                json.dump(history, handle)
    """
)


@pytest.mark.slow  # about 30 s: three processes start and import torch on shared cores
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_gloo_processes_equal_one_process(tmp_path, monkeypatch) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(script),
        str(out),
        "8",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    # The reference: one process, global batch 16 = 2 x 8.
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    namespace: dict = {}
    monkeypatch.syspath_prepend(str(REPO))
    exec(compile(WORKER.replace('if __name__ == "__main__":', "if False:"), str(script), "exec"), namespace)
    single, single_history = namespace["train"](tmp_path / "single", 16)

    distributed = torch.load(out / "final_stream.pt", weights_only=True)
    for key, value in single.stream.state_dict().items():
        torch.testing.assert_close(distributed[key], value, rtol=1e-5, atol=1e-6, msg=key)
    ddp_history = json.loads((out / "returned_history.json").read_text())
    for a, b in zip(ddp_history, single_history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_acc_ca"] == pytest.approx(b["val_acc_ca"]) and a["val_acc_gap"] == pytest.approx(b["val_acc_gap"])
    # Rank 0 wrote plain stream checkpoints (no DDP "module." prefix) and one log.
    torch.manual_seed(0)
    load_stream(attach_stream(TinyCNN(num_classes=4), spec=TINY_SPEC), out / "last.pt")
    assert len((out / "history.jsonl").read_text().splitlines()) == 2


def test_environment_detection(monkeypatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_world() == (3, 4, 1)
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        env_world()
    assert DistInfo().is_main and not DistInfo().enabled


def test_world_size_without_rendezvous_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    torch.manual_seed(0)
    ca = attach_stream(TinyCNN(num_classes=4), spec=TINY_SPEC)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        train_stream(ca, [(torch.zeros(2, 3, 16, 16), torch.zeros(2, dtype=torch.long))], epochs=1, device="cpu")


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert resolve_device(None) == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
