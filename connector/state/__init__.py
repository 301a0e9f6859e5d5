"""What a process remembers between requests: the single-flight cache and rate buckets."""
