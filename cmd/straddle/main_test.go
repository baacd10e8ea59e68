package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain gives the tests' straddle commands a cache folder of their own (the snapshot cache and paged
// indexes default to the user's cache folder), so they neither read nor leave anything in the user's.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "straddle-cmd-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
