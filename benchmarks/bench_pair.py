"""Cost of one training step of the pair form psi*(x_j, a_i, a_j) (Supp. 14) at N = 1000: the paper's one MLP on
every pair (``model.pair_rank: null``, chunks of receivers) against the default sum of products
u(a_i) . v(x_j, a_j) (``circuitgnn.model.pair``), and the sender form psi*(x_j, a_j) for scale. Forward, backward and
Adam on random states (the cost does not depend on the values), median of the timed steps.

    OMP_NUM_THREADS=2 python benchmarks/bench_pair.py
"""

from __future__ import annotations

import argparse
import time

import torch

from circuitgnn.config import ModelConfig
from circuitgnn.device import environment
from circuitgnn.model.gnn import GNN


def step_ms(cfg: ModelConfig, n: int, batch: int, steps: int) -> float:
    """Median milliseconds of one step (prediction loss, backward, Adam)."""
    torch.manual_seed(0)
    model = GNN(cfg, n)
    with torch.no_grad():
        model.a.copy_(torch.randn(n, cfg.embedding_dim))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, n) * 5, torch.randn(batch, n)
    times = []
    for k in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if k >= 2:
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(environment())
    cases = [
        ("pair, one MLP on every pair (paper), hidden 32", ModelConfig(psi_input="x_j,a_i,a_j", pair_rank=None, hidden=32), 2),
        ("pair, sum of 8 products, hidden 64", ModelConfig(psi_input="x_j,a_i,a_j", pair_rank=8, hidden=64), 2),
        ("pair, sum of 8 products, hidden 64", ModelConfig(psi_input="x_j,a_i,a_j", pair_rank=8, hidden=64), 8),
        ("sender form x_j,a_j, hidden 64", ModelConfig(psi_input="x_j,a_j", hidden=64), 8),
    ]
    for name, cfg, batch in cases:
        steps = max(3, args.steps // 5) if cfg.pair_rank is None else args.steps
        ms = step_ms(cfg, args.neurons, batch, steps)
        print(f"{name}, batch {batch}: {ms:.1f} ms per step, {ms / batch:.2f} ms per frame", flush=True)


if __name__ == "__main__":
    main()
