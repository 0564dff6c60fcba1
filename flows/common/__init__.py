"""What every workflow uses: the engine, targets, run bookkeeping, reporting, events, fan-out,
settings and the remote scripts."""
