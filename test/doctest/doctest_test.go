package doctest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestBlocks(t *testing.T) {
	page := strings.Join([]string{
		"# Page",
		"```sh",
		"straddle install   # a real cluster: not run",
		"```",
		"1. A step:",
		"   ```sh doctest",
		"   # a comment",
		"   straddle repo init --repo $DIR",
		"",
		"   straddle repo backup /data \\",
		"     --repo $DIR",
		"   ```",
		"```yaml",
		"```sh doctest",
		"```",
		"```sh doctest",
		"echo one",
		"```",
	}, "\n")
	path := filepath.Join(t.TempDir(), "page.md")
	if err := os.WriteFile(path, []byte(page), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Blocks(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Block{
		{Line: 6, Commands: []string{"straddle repo init --repo $DIR", "straddle repo backup /data  --repo $DIR"}},
		{Line: 16, Commands: []string{"echo one"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("blocks %+v, want %+v", got, want)
	}
}

func TestBlocksRefusesBrokenPages(t *testing.T) {
	for name, page := range map[string]string{
		"unclosed":     "```sh doctest\necho hi\n",
		"continuation": "```sh doctest\necho \\\n```\n",
	} {
		path := filepath.Join(t.TempDir(), name+".md")
		if err := os.WriteFile(path, []byte(page), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Blocks(path); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
