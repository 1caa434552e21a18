#!/usr/bin/env bash
cd "$(dirname "$0")/.." && export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" benchmarks/gpu_suite.py "$@"
