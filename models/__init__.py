"""Models: training, thresholds, evaluation metrics and scoring logic; pure, no I/O."""
