"""The interpretable message-passing GNN."""
