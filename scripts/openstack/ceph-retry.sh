#!/usr/bin/env bash
# `ceph` for cinder-volume (openstack-up.sh puts it first in its PATH as
# $STATE/bin/ceph). Cinder's RBD driver runs `ceph mon dump` on every volume
# attach. Under load the ceph client can send its first command before it
# has the monitor map: the monitor then sees fsid 00000000-... and answers
# "Error EPERM: problem getting command descriptions from mon" (mon.a.log:
# "handle_command on fsid 0000... != <fsid>"), and the attach fails. That
# client race is retried here, a few times; any other error is passed on.
set -u
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
rc=0
for i in 1 2 3 4 5; do
  /usr/bin/ceph "$@" >"$out" 2>"$err" && { cat "$out"; cat "$err" >&2; exit 0; }
  rc=$?
  grep -q "problem getting command descriptions" "$err" || break
  echo "ceph-retry: $* failed with the command-descriptions race (attempt $i); retrying" >&2
  sleep 1
done
cat "$out"; cat "$err" >&2
exit "$rc"
