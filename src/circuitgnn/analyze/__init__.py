"""Analysis of trained models: metrics against ground truth, clustering."""
