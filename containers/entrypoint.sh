#!/bin/sh
# Start the shard worker; every setting comes from the task definition's environment (VQA_*).
# exec: python replaces the shell as PID 1 and receives ECS's SIGTERM itself (it installs a handler).
set -eu
exec python -m vqa.worker "$@"
