"""Reproducing the paper's experiments: a manifest, a resumable runner and the scoreboard."""
