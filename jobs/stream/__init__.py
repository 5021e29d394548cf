"""The streaming jobs: `fraud stream` (Kafka -> stateful features -> CatBoost -> scores and alerts, with the
alert budget and the terminal checks) and `fraud ingest` (the transactions topic landed in Delta)."""
