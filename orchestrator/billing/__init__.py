"""Credit and billing: balances and their ledger (accounts), the meter that reads the event
log (metering, a pure function), the controller's periodic charge (charger) and the fall
back to cpu-basic at zero credit (fallback). docs/architecture.md, "Billing"."""
