"""Per-subject rate limits: token buckets for requests and tokens per minute."""
