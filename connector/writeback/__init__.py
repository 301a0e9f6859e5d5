"""Write-back: events and the Segment messages they become, the durable outbox, its drainer."""
