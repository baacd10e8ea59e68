package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "straddle",
		Short:         "Back up and restore Kubernetes pod volumes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRepoCmd())
	return root
}
