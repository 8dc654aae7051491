"""Constructs, one per concern, shared by the two stacks where the concern is shared."""
