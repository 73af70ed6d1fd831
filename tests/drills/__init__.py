"""Fault drills against real processes: Redis killed and slowed, services stopped and killed,
upstream faults, slow consumers. `make drills` runs all of them; the fast ones also run in CI."""
