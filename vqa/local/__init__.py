"""Local emulation of both architectures (moto, in-process): no AWS account needed."""
