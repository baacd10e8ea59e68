#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each. A target fails only when it writes a failing input to
# testdata/fuzz: go1.26's fuzz coordinator can report a bare "context deadline exceeded" when -fuzztime ends
# mid-execution (golang/go#75804, fixed in Go 1.27), which is not a finding.
set -uo pipefail
fuzztime=${FUZZTIME:-20s}
failed=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    corpus="$dir/testdata/fuzz/$target"
    before=$(ls "$corpus" 2>/dev/null | wc -l)
    echo "== $pkg $target"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" > /tmp/fuzz-$$.log 2>&1
    status=$?
    tail -3 /tmp/fuzz-$$.log
    after=$(ls "$corpus" 2>/dev/null | wc -l)
    if [ "$status" -ne 0 ] && [ "$after" -gt "$before" ]; then
      echo "FAILED: $target wrote a failing input to $corpus"
      cat /tmp/fuzz-$$.log
      failed=1
    elif [ "$status" -ne 0 ]; then
      echo "note: $target stopped with an error but wrote no failing input (golang/go#75804); not a finding"
    fi
  done
done
rm -f /tmp/fuzz-$$.log
exit $failed
