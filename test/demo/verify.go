package main

import (
	"fmt"

	"github.com/straddle-io/straddle/test/trees"
)

// verifyVolume compares the restored volume name at got with the copy at want taken before the backup, and
// returns what it holds; a difference fails the check named after the volume.
func verifyVolume(name, want, got string) (files int, size int64, err error) {
	what := "volume " + name + " is restored byte for byte"
	if err := trees.Compare(want, got); err != nil {
		return 0, 0, check(what, err)
	}
	files, size, err = countTree(got)
	return files, size, check(what, err)
}

// humanBytes prints a size the way the CLI does: 1.5 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
