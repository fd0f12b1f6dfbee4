"""W sharded by receiver rows over torch.distributed: two processes give the one-process result."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

from circuitgnn.config import dump_config
from circuitgnn.errors import CircuitGNNError
from circuitgnn.train.distributed import ShardedGNN, receiver_rows, train_one_process, train_sharded
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is unavailable")


def test_receiver_rows_cover_every_neuron_once():
    for n, world in ((10, 3), (7, 7), (1000, 4), (5, 2)):
        parts = [receiver_rows(n, world, r) for r in range(world)]
        assert [i for part in parts for i in part] == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_two_processes_started_by_torchrun_equal_one_process(network, tmp_path):
    config = tiny_config(n_neurons=50)
    config.training.batch_size = 8
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    out = tmp_path / "w.npy"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "circuitgnn.train.distributed", str(path), str(network.path), "--steps", "30", "--out", str(out), "--from-gnn"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    causes = [line for line in done.stderr.splitlines() if "what()" in line or "Error" in line or "terminate" in line]
    assert done.returncode == 0, "\n".join(causes[:20]) + "\n" + done.stderr[-2000:]
    reference = train_one_process(config, np.asarray(network.x), np.asarray(network.dxdt), 30)
    np.testing.assert_allclose(np.load(out), reference.W.detach().numpy(), atol=1e-6)
    assert '"processes": 2' in out.with_suffix(".json").read_text()


def test_alone_the_sharded_model_is_the_gnn(network):
    """One process holding every row: the same steps as the whole GNN."""
    config = tiny_config(n_neurons=50)
    x, dxdt = np.array(network.x), np.array(network.dxdt)
    torch.manual_seed(config.training.seed)
    from circuitgnn.model.gnn import GNN

    gnn = GNN(config.model, 50, generator=torch.Generator().manual_seed(config.training.seed))
    sharded = ShardedGNN.from_gnn(gnn, range(0, 50), config)
    torch.testing.assert_close(sharded(torch.from_numpy(x[:4])), gnn(torch.from_numpy(x[:4])))
    train_sharded(sharded, x, dxdt, config, 20)
    reference = train_one_process(config, x, dxdt, 20)
    torch.testing.assert_close(sharded.W.detach(), reference.W.detach(), atol=1e-6, rtol=1e-5)
    assert float(sharded.W.detach().diagonal().abs().max()) == 0.0
    created = ShardedGNN.create(config, 50, range(10, 20), torch.Generator().manual_seed(0))
    assert created.W.shape == (10, 50) and float(created.W.detach()[torch.arange(10), torch.arange(10, 20)].abs().max()) == 0.0


def test_what_it_cannot_shard_is_refused():
    config = tiny_config()
    config.model.psi_input = "x_j,a_i,a_j"
    with pytest.raises(CircuitGNNError, match="sender-only psi"):
        ShardedGNN.create(config, 10, range(0, 5), torch.Generator())


def test_processes_share_a_single_gpu_through_gloo_on_the_cpu(monkeypatch):
    """Regression: on a machine with one GPU, the second of two processes asked for cuda:1 and failed."""
    from circuitgnn.train import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed.backend_and_device() == ("gloo", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.backend_and_device() == ("nccl", torch.device("cuda", 1))
