"""Profile cards: caller addresses, the lookup in Segment, pure card building, the card service."""
