"""`fraud desk`: the fraud team's web page over the stream's topics and tables (the queue of alerts and
terminal cases, decisions sent as labels, the bank's requirement by day, the stream's health)."""
