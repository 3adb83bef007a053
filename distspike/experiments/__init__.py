"""Reproductions of the paper's figures and tables (written to ``results/``)."""
