"""Drift and performance reports, Prometheus metrics and the retraining trigger."""
