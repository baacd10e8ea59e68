// Package doctest reads the shell commands a documentation page marks as runnable, so tests can run them and
// the docs cannot drift from the CLI. A runnable block is a fenced code block whose info string is
// "sh doctest" (GitHub renders it as shell); each of its lines is one command, a trailing backslash joins the
// next line, and lines starting with # are comments. Other blocks are examples for a real cluster and are
// left alone.
package doctest

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Block is one runnable block of a page.
type Block struct {
	// Line is the line of the opening fence, 1-based, for messages.
	Line int
	// Commands are the block's commands, continuation lines joined.
	Commands []string
}

// Blocks reads the runnable blocks of the Markdown file at path.
func Blocks(path string) ([]Block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read doc %s: %w", path, err)
	}
	defer f.Close()
	var (
		out     []Block
		cur     *Block
		pending string
		fence   string
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case fence == "" && strings.HasPrefix(trimmed, "```"):
			fence = "```"
			if strings.Join(strings.Fields(trimmed[len(fence):]), " ") == "sh doctest" {
				cur = &Block{Line: n}
			}
		case fence != "" && trimmed == fence:
			if cur != nil {
				if pending != "" {
					return nil, fmt.Errorf("%s:%d: the block ends inside a command continued with a backslash", path, n)
				}
				out = append(out, *cur)
			}
			cur, fence = nil, ""
		case cur != nil:
			if pending == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
				continue
			}
			if strings.HasSuffix(trimmed, "\\") {
				pending += strings.TrimSuffix(trimmed, "\\") + " "
				continue
			}
			cur.Commands = append(cur.Commands, pending+trimmed)
			pending = ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read doc %s: %w", path, err)
	}
	if fence != "" {
		return nil, fmt.Errorf("%s: a code block is never closed", path)
	}
	return out, nil
}
