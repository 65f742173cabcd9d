"""Evaluation: metrics, batched generation, and scoring held-out rows."""
