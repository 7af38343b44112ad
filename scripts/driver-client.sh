#!/usr/bin/env bash
# Runs the Secrets Store CSI driver's own client code, as built from each release tag, against
# the provider over its socket (tests/driver_client.rs), outside CI:
#
#   scripts/driver-client.sh           # run every tag's client: files, modes, versions, errors
#   scripts/driver-client.sh record    # the same, and write tests/fixtures/driver/<tag>.json
#
# The clients are not built here: ../shared/driver-client/build.sh builds them with Go from
# git mirrors of the driver and its dependencies (its README says how) into
# $DC_CACHE/bin (default ~/.cache/driverclient/bin). Set DRIVERCLIENT_DIR to use another
# folder, DRIVER_TAGS=v1.6.0,v1.5.6 to run some tags only. The test command replays the
# recordings (tests/driver_replay.rs) without Go.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-run}" in
  run) ;;
  record) export DRIVER_RECORD=1 ;;
  *) echo "usage: $0 [run|record]" >&2; exit 2 ;;
esac

BAO_BIN="$(./scripts/setup.sh | tail -n 1)"
export BAO_BIN
exec cargo test --locked --test driver_client -- --ignored --nocapture
