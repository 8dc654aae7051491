"""The distributed architecture's Lambda handlers (start, convert, detect, aggregate)."""
