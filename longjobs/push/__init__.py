"""What the service tells others without being asked: webhooks, event streams, metrics."""
