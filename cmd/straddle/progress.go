package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal: progress bars go to terminals, never to pipes or logs. It asks
// the terminal driver, since /dev/null is a character device too (and is stdin under cron and go test).
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}

// progressBar redraws one line on a terminal. A nil bar does nothing, so callers need not check.
type progressBar struct {
	w     io.Writer
	what  string
	start time.Time
}

func newProgressBar(w io.Writer, what string) *progressBar {
	return &progressBar{w: w, what: what, start: time.Now()}
}

func (b *progressBar) update(bytesDone, bytesTotal, filesDone, filesTotal uint64, totalsKnown bool) {
	if b == nil {
		return
	}
	el := time.Since(b.start)
	rate := float64(bytesDone) / max(el.Seconds(), 0.001)
	line := fmt.Sprintf("%s %s %s", b.what, formatDuration(el), humanBytes(bytesDone))
	if totalsKnown && bytesTotal > 0 {
		pct := min(float64(bytesDone)/float64(bytesTotal), 1)
		n := int(pct * 20)
		line = fmt.Sprintf("%s [%s%s] %3.0f%% %s/%s, %d/%d files", b.what, strings.Repeat("=", n), strings.Repeat(" ", 20-n), pct*100,
			humanBytes(bytesDone), humanBytes(bytesTotal), filesDone, filesTotal)
		if rate > 0 && bytesDone < bytesTotal {
			line += ", ETA " + formatDuration(time.Duration(float64(bytesTotal-bytesDone)/rate*float64(time.Second)))
		}
	} else {
		line += fmt.Sprintf(", %d files", filesDone)
	}
	line += fmt.Sprintf(", %s/s", humanBytes(uint64(rate)))
	fmt.Fprintf(b.w, "\r\033[K%s", line)
}

func (b *progressBar) finish() {
	if b != nil {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

func formatDuration(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
