package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newRepoKeyCmd(f *repoFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "List, add and remove the passwords (keys) that open the repository",
	}
	cmd.AddCommand(newRepoKeyListCmd(f), newRepoKeyAddCmd(f), newRepoKeyRemoveCmd(f), newRepoKeyPasswdCmd(f))
	return cmd
}

// newPasswordFlags say where key add and key passwd read the new password from.
type newPasswordFlags struct {
	file string
	// prompt reads one line from the terminal without echo; nil when there is no terminal to ask.
	prompt func(prompt string) ([]byte, error)
}

func (n *newPasswordFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&n.file, "new-password-file", "", "read the new password from this file (else env STRADDLE_NEW_PASSWORD, else a prompt on a terminal)")
}

// useTerminal sets the prompt when stdin is a terminal; the prompts go to errOut so stdout stays parseable.
func (n *newPasswordFlags) useTerminal(errOut io.Writer) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return
	}
	n.prompt = func(prompt string) ([]byte, error) {
		fmt.Fprint(errOut, prompt)
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(errOut)
		return pw, err
	}
}

// read returns the new password from the file, the environment, or the prompt (asked twice, so a typo cannot
// lock anyone out).
func (n *newPasswordFlags) read() ([]byte, error) {
	if n.file != "" {
		b, err := os.ReadFile(n.file)
		if err != nil {
			return nil, fmt.Errorf("read new password file: %w", err)
		}
		// As with --password-file: the trailing newline of an editor or `echo` is not part of the password.
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("new password file %s is empty", n.file)
		}
		return b, nil
	}
	if p := os.Getenv("STRADDLE_NEW_PASSWORD"); p != "" {
		return []byte(p), nil
	}
	if n.prompt == nil {
		return nil, errors.New("no new password: pass --new-password-file or set STRADDLE_NEW_PASSWORD (a prompt needs a terminal)")
	}
	first, err := n.prompt("new password: ")
	if err != nil {
		return nil, fmt.Errorf("read new password: %w", err)
	}
	if len(first) == 0 {
		return nil, errors.New("the new password is empty")
	}
	again, err := n.prompt("repeat the new password: ")
	if err != nil {
		return nil, fmt.Errorf("read new password: %w", err)
	}
	if !bytes.Equal(first, again) {
		return nil, errors.New("the two new passwords differ; nothing was changed")
	}
	return first, nil
}
