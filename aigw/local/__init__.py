"""Local inference: engines owning loaded models on their own threads, and the scheduler."""
