"""Trainers, losses, schedules and checkpoints, one trainer per model."""
