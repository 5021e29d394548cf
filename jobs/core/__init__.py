"""The platform every job stands on: configuration, the command line's common options, the Spark session, the
lake's I/O (Delta, Hadoop file systems), the MLflow registry, Prometheus metrics, Kafka connection settings,
errors, waits and option checks. Imports nothing else of `jobs`."""
