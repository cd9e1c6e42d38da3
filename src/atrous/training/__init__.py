"""Training with Lightning: the task module, data module, losses, schedules and callbacks."""
