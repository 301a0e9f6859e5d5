"""Who is asking: the gate before every route, Flex tokens, Studio signatures, the audit trail."""
