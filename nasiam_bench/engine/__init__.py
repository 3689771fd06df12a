"""Training: the one loop with its read points, pre-training with its checkpoints, lockstep heads, and tracking."""
