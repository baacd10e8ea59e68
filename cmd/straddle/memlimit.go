package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// cgroupMemoryFiles hold the memory limit of the process's cgroup: v2's memory.max, else v1's.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// parseMemoryLimit reads a --memory-limit value: a Kubernetes quantity ("512Mi", "1G"), "0" for none, or
// "auto" for the cgroup's limit (none when the cgroup has none).
func parseMemoryLimit(s string, cgroupFiles []string) (int64, error) {
	if s == "auto" {
		for _, f := range cgroupFiles {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			v := strings.TrimSpace(string(b))
			n, err := strconv.ParseInt(v, 10, 64)
			// "max" (v2) or a huge page-rounded number (v1) mean unlimited.
			if err != nil || n <= 0 || n >= 1<<60 {
				return 0, nil
			}
			return n, nil
		}
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("--memory-limit %q: want a size such as 512Mi, 0 for none, or auto", s)
	}
	return q.Value(), nil
}
