"""Jobs: the only package that does I/O (Spark sessions, Kafka, Delta, MLflow, files)."""
