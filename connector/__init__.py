"""Unified Profiles connector: Segment Unify profiles for Twilio Flex and Studio."""

__version__ = "0.1.0"
