#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth`` / ``npx cdk deploy VqaDistributed`` / ``VqaMonolith``."""

import sys

from stacks import build_app

try:
    app = build_app(context={})
except ValueError as exc:  # bad `vqa` context (unknown key, capacity that does not add up)
    print(f"cdk.json context vqa: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
app.synth()
