"""Schedules (pure) and the imsched daemon."""
