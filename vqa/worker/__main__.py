"""``python -m vqa.worker``: run the shard worker (see :mod:`vqa.worker.cli`)."""

import sys

from vqa.worker.cli import main

sys.exit(main())
