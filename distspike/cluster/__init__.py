"""Cluster tooling: an emulated multi-node Ray cluster on one machine (``emulated.py``)."""
