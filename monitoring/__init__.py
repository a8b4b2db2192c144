"""Monitoring: drift of what the champion served (stattests, drift), its realized quality on matured cohorts
(performance), the retraining loop and its gate (loop, retrain), and where results go (publish, metrics).
See docs/monitoring.md."""
