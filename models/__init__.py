"""Training, tuning, evaluation and registration of the lead-scoring ensemble (MLflow)."""
