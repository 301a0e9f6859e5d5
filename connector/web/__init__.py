"""The HTTP face: blueprints, request fields, error pages, the OpenAPI document."""
