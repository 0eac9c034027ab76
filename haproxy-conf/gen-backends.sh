#!/usr/bin/env bash
# Kept for old callers: `seedctl haproxy` writes the final backends itself (see its --help).
exec "${SEEDCTL:-${SEEDGATE_BUILD:-$(cd "$(dirname "$0")" && pwd)/../build}/seedctl}" haproxy "$@"
