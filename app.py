#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth`` / ``npx cdk deploy VqaDistributed`` / ``VqaMonolith``."""

from stacks import build_app

build_app(context={}).synth()
