"""Training: losses and regularisers, the training loop, clustering, checkpoints."""
