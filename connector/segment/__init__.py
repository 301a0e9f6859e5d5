"""Segment's Profile API as the connector calls it: the client, deadlines, response shapes."""
