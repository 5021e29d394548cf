"""The commands around the topics: `fraud produce` (raw files or a simulation into the transactions topic),
`fraud label` (the fraud team's labels), `fraud alerts` (the alerts topic, readably)."""
