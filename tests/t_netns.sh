#!/usr/bin/env bash
# Issue #4 "multi-host for real": a 3-stage run with the coordinator and every
# stage in its own network namespace must match the loopback run bitwise.
# Skips (exit 77, counted as skipped by tests/run.sh, with the reason) where
# namespaces cannot be created.
# The harness and its namespace helpers are in tests/netns/.
cd "$(dirname "$0")/.." || exit 1
exec timeout -k 10 150 bash tests/netns/run.sh
