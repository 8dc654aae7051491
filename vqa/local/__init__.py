"""Local emulation of both architectures (moto, in-process): no AWS account needed.

The emulations read the CDK app (``stacks``), whose jsii runtime prints a Node end-of-life banner
on stderr and may send CLI telemetry; neither belongs in a run's output.
"""

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
