"""W sharded by receiver rows over ``torch.distributed``: each process holds its rows of W and their Adam state.

    torchrun --nproc_per_node 2 -m circuitgnn.train.distributed CONFIG DATASET --steps 1000 --out runs/w.npy

Every process reads the same batch of frames (each has the data; nothing about a frame is sent), evaluates
psi* for all senders (the MLPs and the embeddings are replicated) and predicts the drift of its own receivers:
its rows of W times the senders' psi* values, plus phi* of its receivers. Its part of the loss is its
receivers' squared error over the global count, so the parts add up to the one-process loss: W's rows get
their exact gradient locally, and the gradients of the shared parameters are summed across processes (one
all-reduce per step of the MLPs' and the embeddings' numbers). Adam then takes the same step on the shared
parameters everywhere, so they stay equal without being sent.

W for N = 100,000 with its gradient and Adam's two moments is 160 GB in float32: more than one device holds,
a quarter of it on each of 4. What is distributed is the derivative objective's prediction error (the
regularisers, clustering, warm start and checkpoints of :class:`~circuitgnn.train.trainer.Trainer` are not).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from circuitgnn.config import ExperimentConfig, load_config
from circuitgnn.device import peak_memory_mb
from circuitgnn.errors import CircuitGNNError
from circuitgnn.model.gnn import GNN, neuron_function


def receiver_rows(n_neurons: int, world: int, rank: int) -> range:
    """The receivers (rows of W) of process ``rank`` of ``world``: contiguous, sizes differing by at most one."""
    base, extra = divmod(n_neurons, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class ShardedGNN(nn.Module):
    """The GNN with only the rows ``rows`` of W (receivers), the MLPs and the embeddings whole.

    Made from a one-process :class:`~circuitgnn.model.gnn.GNN` (:meth:`from_gnn`, the same start everywhere),
    or directly with its rows drawn from ``generator`` (no N x N matrix is ever formed).
    """

    def __init__(self, gnn_like: GNN | None, rows: range, n_neurons: int, w: torch.Tensor, config: ExperimentConfig):
        super().__init__()
        model = config.model
        if model.psi_input == "x_j,a_i,a_j" or model.low_rank is not None or model.connectivity_mask is not None:
            raise CircuitGNNError("the sharded GNN needs a dense, unmasked W and a sender-only psi* (psi_input x_j or x_j,a_j)")
        if model.external_input != "none":
            raise CircuitGNNError("the sharded GNN does not take an external input (model.external_input must be 'none')")
        source = gnn_like if gnn_like is not None else GNN(model, 1)
        self.psi_input = model.psi_input
        self.phi, self.psi = copy.deepcopy(source.phi), copy.deepcopy(source.psi)
        self.a = nn.Parameter(source.a.detach().clone().expand(n_neurons, -1).contiguous())
        self.rows, self.n = rows, n_neurons
        self.W = nn.Parameter(w)
        diagonal = torch.zeros_like(w, dtype=torch.bool)
        local = torch.arange(len(rows))
        diagonal[local, torch.as_tensor(rows)] = True
        self.register_buffer("diagonal", diagonal, persistent=False)  # where W holds W_ii (the receiver is also the sender)
        with torch.no_grad():
            self.W.masked_fill_(diagonal, 0.0)
        self.W.register_post_accumulate_grad_hook(self._zero_diagonal_gradient)  # W_ii stays 0 under Adam

    def _zero_diagonal_gradient(self, w: torch.Tensor) -> None:
        assert w.grad is not None
        w.grad.masked_fill_(self.get_buffer("diagonal"), 0.0)

    @classmethod
    def from_gnn(cls, gnn: GNN, rows: range, config: ExperimentConfig) -> ShardedGNN:
        """The rows ``rows`` of a whole GNN (copies: the GNN is not changed)."""
        return cls(gnn, rows, gnn.n, gnn.W.detach()[rows.start : rows.stop].clone(), config)

    @classmethod
    def create(cls, config: ExperimentConfig, n_neurons: int, rows: range, generator: torch.Generator) -> ShardedGNN:
        """New rows of W (std ``model.w_init_std``) from ``generator``; the MLPs from ``training.seed`` (the same everywhere)."""
        torch.manual_seed(config.training.seed)
        small = GNN(config.model, 1)
        w = torch.randn(len(rows), n_neurons, generator=generator) * config.model.w_init_std
        return cls(small, rows, n_neurons, w, config)

    def shared(self) -> list[nn.Parameter]:
        """The parameters every process holds whole (their gradients are summed across processes)."""
        return [*self.phi.parameters(), *self.psi.parameters(), self.a]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The drift of this process's receivers, (B, rows), from whole frames x (B, N)."""
        signal = neuron_function(self.psi, x, None if self.psi_input == "x_j" else self.a)
        mine = slice(self.rows.start, self.rows.stop)
        return neuron_function(self.phi, x[:, mine], self.a[mine]) + signal @ self.W.T


def make_optimizer(model: nn.Module, config: ExperimentConfig) -> torch.optim.Adam:
    """Adam with the trainer's learning rates: W, the MLPs, the embeddings."""
    tc = config.training
    phi_psi = [*model.phi.parameters(), *model.psi.parameters()]  # type: ignore[union-attr]
    return torch.optim.Adam(
        [{"params": [model.W], "lr": tc.lr_w}, {"params": phi_psi, "lr": tc.lr_mlp}, {"params": [model.a], "lr": tc.lr_embedding}]
    )


def frame_batches(n_frames: int, config: ExperimentConfig, steps: int) -> Iterator[torch.Tensor]:
    """The frame indices of each step: the same on every process (seeded by ``training.seed``)."""
    generator = torch.Generator().manual_seed(config.training.seed + 1)
    for _ in range(steps):
        yield torch.randint(n_frames - 1, (config.training.batch_size,), generator=generator)


def train_sharded(model: ShardedGNN, x: np.ndarray, dxdt: np.ndarray, config: ExperimentConfig, steps: int) -> dict[str, float]:
    """``steps`` Adam steps on this process's part of the prediction error (in a process group when one is
    initialised; alone otherwise); returns the seconds and the numbers all-reduced per step."""
    optimizer = make_optimizer(model, config)
    shared = model.shared()
    rows = slice(model.rows.start, model.rows.stop)
    grouped = dist.is_available() and dist.is_initialized()
    start = time.perf_counter()
    device = model.W.device
    for idx in frame_batches(len(x), config, steps):
        xb = torch.from_numpy(np.asarray(x[idx.numpy()], dtype=np.float32)).to(device)
        yb = torch.from_numpy(np.asarray(dxdt[idx.numpy()], dtype=np.float32))[:, rows].to(device)
        loss = ((model(xb) - yb) ** 2).sum() / (xb.shape[0] * model.n)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        if grouped:
            flat = torch.cat([p.grad.reshape(-1) for p in shared])  # type: ignore[union-attr]
            dist.all_reduce(flat)
            offset = 0
            for p in shared:
                assert p.grad is not None
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        optimizer.step()
    return {"seconds": time.perf_counter() - start, "all_reduced_numbers": float(sum(p.numel() for p in shared))}


def train_one_process(config: ExperimentConfig, x: np.ndarray, dxdt: np.ndarray, steps: int) -> GNN:
    """The same training in one process with the whole GNN (the reference the sharded run must equal)."""
    torch.manual_seed(config.training.seed)
    gnn = GNN(config.model, x.shape[1], generator=torch.Generator().manual_seed(config.training.seed))
    optimizer = make_optimizer(gnn, config)
    for idx in frame_batches(len(x), config, steps):
        xb = torch.from_numpy(np.asarray(x[idx.numpy()], dtype=np.float32))
        yb = torch.from_numpy(np.asarray(dxdt[idx.numpy()], dtype=np.float32))
        loss = ((gnn(xb) - yb) ** 2).mean()
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
    return gnn


def gather_rows(model: ShardedGNN, world: int) -> torch.Tensor | None:
    """The whole W on rank 0 (None elsewhere), from every process's rows."""
    size = receiver_rows(model.n, world, 0).stop  # the largest share
    padded = torch.zeros(size, model.n, device=model.W.device)
    padded[: len(model.rows)] = model.W.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)] if dist.get_rank() == 0 else None
    dist.gather(padded, parts, dst=0)
    if parts is None:
        return None
    return torch.cat([part[: len(receiver_rows(model.n, world, r))] for r, part in enumerate(parts)]).cpu()


def backend_and_device() -> tuple[str, torch.device]:
    """NCCL and this process's own GPU when the machine has one GPU per local process; else gloo on the CPU
    (two processes cannot share one GPU under NCCL)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and torch.cuda.device_count() >= int(os.environ.get("LOCAL_WORLD_SIZE", "1")):
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return "nccl", device
    return "gloo", torch.device("cpu")


def _load(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    from circuitgnn.data.dataset import Dataset
    from circuitgnn.data.derivatives import estimate_derivative

    ds = Dataset(dataset)
    x = np.asarray(ds.x)
    dxdt = np.asarray(ds.dxdt) if ds.dxdt is not None else estimate_derivative(x, ds.dt, "forward")
    return x, dxdt


def main(argv: list[str] | None = None) -> None:
    """The torchrun entry point (module docstring): trains, rank 0 writes W and its summary, and every process then
    ends itself with exit status 0, without tearing the process group down."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML (model and training settings)")
    parser.add_argument("dataset", help="dataset folder")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", required=True, help="W (N x N) as .npy, written by rank 0, with a .json summary beside it")
    parser.add_argument("--from-gnn", action="store_true", help="start from the one-process GNN's weights (the same seed; forms W whole)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"--steps must be at least 1, got {args.steps}")
    backend, device = backend_and_device()
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    config = load_config(args.config)
    x, dxdt = _load(args.dataset)
    rows = receiver_rows(x.shape[1], world, rank)
    if args.from_gnn:
        torch.manual_seed(config.training.seed)
        gnn = GNN(config.model, x.shape[1], generator=torch.Generator().manual_seed(config.training.seed))
        model = ShardedGNN.from_gnn(gnn, rows, config)
        del gnn
    else:
        model = ShardedGNN.create(config, x.shape[1], rows, torch.Generator().manual_seed(config.training.seed + 1000 + rank))
    model.to(device)
    stats = train_sharded(model, x, dxdt, config, args.steps)
    w = gather_rows(model, world)
    if w is not None:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp.npy")
        np.save(tmp, w.numpy())
        os.replace(tmp, out)
        summary = {
            "processes": world,
            "n_neurons": x.shape[1],
            "steps": args.steps,
            **stats,
            "ms_per_step": 1e3 * stats["seconds"] / args.steps,
            "peak_memory_mb_rank0": peak_memory_mb(),
        }
        out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    # No process leaves while another still reads from it: gloo aborts a process whose peer closes mid-transfer.
    dist.barrier()
    # Every process is past its last collective and rank 0's files are complete: leave without the teardown.
    # destroy_process_group and the interpreter's exit join gloo's threads, which aborted a rank now and then on CI
    # ("terminate called without an active exception"), also after the barrier above; the system frees the rest.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
