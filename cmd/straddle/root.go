package main

import (
	"github.com/spf13/cobra"
)

// version is set at build time: go build -ldflags "-X main.version=…".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "straddle",
		Version:       version,
		Short:         "Back up and restore Kubernetes pod volumes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRepoCmd(), newInstallCmd(), newUninstallCmd(), newImagesCmd(), newBackupCmd(), newScheduleCmd(), newRestoreCmd(), newControllerCmd(), newNodeAgentCmd(), newRepositoryPasswordCmd())
	return root
}
