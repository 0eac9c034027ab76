#!/usr/bin/env bash
# Kept for old callers: `seedctl haproxy` writes the final backends itself (see its --help).
here=$(cd "$(dirname "$0")" && pwd)
exec "${SEEDCTL:-${SEEDGATE_BUILD:-$here/../build}/seedctl}" haproxy "$@"
