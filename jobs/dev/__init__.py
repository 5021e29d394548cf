"""Development only, never shipped to executors (spark-submit/submit.sh leaves it out of the zip): the local
Kafka broker launcher and `fraud kafka`."""
