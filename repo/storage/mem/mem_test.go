package mem

import (
	"testing"

	"github.com/straddle-io/straddle/repo/storage/storagetest"
)

func TestConformance(t *testing.T) { storagetest.Run(t, New()) }
