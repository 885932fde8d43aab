"""The adversarial suite: hostile programs, each checked against the same invariants."""
