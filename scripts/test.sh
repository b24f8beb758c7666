#!/usr/bin/env bash
# `make test`: every test tier against real parts.
#
# As root it first starts the real services the integration tests need,
# through each scripts/<service>-up.sh that exists (each installs its own
# packages and is idempotent), exports CAIRN_REQUIRE_<SERVICE>=1 so that
# those tests fail instead of skipping when the service is unreachable, and
# stops the services again at the end (CAIRN_KEEP_SERVICES=1 keeps them).
# Not as root, the service tests skip and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

started=()
stop_services() {
  [[ "${CAIRN_KEEP_SERVICES:-}" == 1 ]] && return 0
  for svc in "${started[@]}"; do scripts/"$svc"-down.sh || echo "test: $svc-down.sh failed" >&2; done
}
trap stop_services EXIT

for svc in openstack libvirt; do
  up=scripts/$svc-up.sh
  [[ -x $up ]] || continue
  if [[ $(id -u) -ne 0 ]]; then
    echo "test: not root, so the $svc integration tests will skip" >&2
    continue
  fi
  echo "test: starting $svc ($up)"
  t0=$SECONDS
  "$up"
  started+=("$svc")
  echo "test: $svc up in $((SECONDS - t0)) s"
  export "CAIRN_REQUIRE_${svc^^}=1"
done

$GO vet ./...
CAIRN_REQUIRE_TOOLS=1 $GO test -count=1 -timeout 60m ./...
