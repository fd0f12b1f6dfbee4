"""The dataset format: streamed writing, memory-mapped reading, ground truth."""
