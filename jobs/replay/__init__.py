"""The system end to end on this machine: `fraud demo` (what `make demo` runs) and `fraud backtest` (the live
loop replayed in event time, against the bank's requirement)."""
