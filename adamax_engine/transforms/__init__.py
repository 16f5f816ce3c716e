"""What happens to a grad before the update: clippers and regularizers (lr schedules: ``lr/``)."""
