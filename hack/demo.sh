#!/usr/bin/env bash
# make demo-repo: back up a generated sample volume, change it, back it up again, restore both snapshots and verify
# them byte for byte. Every step prints the command a user would type. Leaves nothing behind.
set -euo pipefail

bin=${STRADDLE:-$(dirname "$0")/../bin/straddle}
work=$(mktemp -d -t straddle-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A random password, as `straddle install` makes: no password is built in anywhere.
export STRADDLE_PASSWORD="$(head -c 32 /dev/urandom | base64 | tr -d "\n")"
repo="$work/repo"
vol="$work/volume"

bold=$'\033[1m'; green=$'\033[32m'; red=$'\033[31m'; off=$'\033[0m'
[ -t 1 ] || { bold=; green=; red=; off=; }
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
run() { printf '%s$ straddle %s%s\n' "$bold" "$*" "$off"; "$bin" "$@"; }
fail() { printf '%sFAILED: %s%s\n' "$red" "$*" "$off"; exit 1; }

say "Generating a sample pod volume in $vol"
mkdir -p "$vol/db" "$vol/config" "$vol/uploads" "$vol/logs"
head -c $((24 << 20)) /dev/urandom > "$vol/db/data.ibd"                     # incompressible database pages
for i in $(seq 1 2000); do echo "$(date -u +%FT%TZ) GET /api/items/$i 200 ${i}ms user=u$((i % 97))"; done > "$vol/logs/access.log"
for i in $(seq 1 300); do head -c $((RANDOM % 8192 + 1)) /dev/urandom > "$vol/uploads/file-$i.bin"; done
printf 'listen: 0.0.0.0:8080\nreplicas: 3\n' > "$vol/config/app.yaml"
: > "$vol/config/empty.lock"
ln -s app.yaml "$vol/config/current"
ln "$vol/config/app.yaml" "$vol/config/app.yaml.hardlink"
chmod 0600 "$vol/db/data.ibd"
echo "$(find "$vol" -type f | wc -l) files, $(du -sh "$vol" | cut -f1)"
cp -a "$vol" "$work/expected-1"

start=$(date +%s%N)
say "Create an encrypted repository (the password comes from STRADDLE_PASSWORD)"
run repo init --repo "$repo"

say "First backup: everything is new"
run repo backup "$vol" --repo "$repo" --tag pod=voting-db-0 --tag volume=data
first=$("$bin" repo snapshots --repo "$repo" --json | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' | head -c 8)

say "The app writes: a few database pages change, logs grow, an upload arrives, one is deleted"
dd if=/dev/urandom of="$vol/db/data.ibd" bs=4096 count=64 seek=1000 conv=notrunc status=none
for i in $(seq 2001 2100); do echo "$(date -u +%FT%TZ) POST /api/vote/$i 201 3ms"; done >> "$vol/logs/access.log"
head -c 100000 /dev/urandom > "$vol/uploads/new-upload.bin"
rm "$vol/uploads/file-7.bin"

say "Second backup: only changed files are read, only new chunks are stored"
run repo backup "$vol" --repo "$repo" --tag pod=voting-db-0 --tag volume=data
run repo snapshots --repo "$repo"

say "Restore both snapshots"
run repo restore "$first" --repo "$repo" --target "$work/restore-1"
run repo restore latest --repo "$repo" --target "$work/restore-2"

say "Verify byte for byte (content, modes, symlinks)"
diff -r --no-dereference "$work/expected-1" "$work/restore-1" || fail "snapshot $first differs from the original"
echo "snapshot $first matches the volume as it was at the first backup"
diff -r --no-dereference "$vol" "$work/restore-2" || fail "the latest snapshot differs from the volume"
echo "the latest snapshot matches the volume as it is now"
[ "$(stat -c %a "$work/restore-2/db/data.ibd")" = 600 ] || fail "file mode not restored"
[ "$(stat -c %i "$work/restore-2/config/app.yaml")" = "$(stat -c %i "$work/restore-2/config/app.yaml.hardlink")" ] || fail "hard link not restored"

say "Check every byte of the repository"
run repo check --repo "$repo" --read-data
run repo stats --repo "$repo"

ms=$((($(date +%s%N) - start) / 1000000))
printf '\n%sDemo passed%s in %d.%03ds: two snapshots backed up, restored and verified. Repository size: %s for %s of volume data.\n' \
  "$green" "$off" $((ms / 1000)) $((ms % 1000)) "$(du -sh "$repo" | cut -f1)" "$(du -sh "$vol" | cut -f1)"
