// Command demo is `make demo`: the seed scenario of a new user's first ten minutes, on a local control plane.
// It starts kube-apiserver and etcd (envtest, from bin/), installs Straddle with the real `straddle install`
// against a filesystem storage location in a temporary folder (or MinIO with -storage minio), runs `straddle
// controller`, two `straddle node-agent` processes and the kubelet simulator (test/kubeletsim), then creates
// namespace voting (a database pod with a claim, a frontend with an emptyDir), annotates it, backs it up,
// deletes the namespace, restores it and checks the restored data byte for byte. Every step is printed as the
// command a user would type in a real cluster, with that command's real output. It ends with a summary and
// exits 1 naming the failed check, if any; it leaves no process and no folder behind.
//
//	go run ./test/demo -straddle bin/straddle -restore-helper bin/straddle-restore-helper -assets bin
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func main() {
	var o options
	flag.StringVar(&o.straddle, "straddle", "bin/straddle", "the straddle binary to run")
	flag.StringVar(&o.restoreHelper, "restore-helper", "bin/straddle-restore-helper", "the straddle-restore-helper binary the simulated kubelet runs as restore-wait")
	flag.StringVar(&o.assets, "assets", "bin", "the folder holding kube-apiserver and etcd")
	flag.StringVar(&o.storage, "storage", "filesystem", "the storage location: filesystem (a temporary folder) or minio")
	flag.StringVar(&o.minio, "minio", "bin/minio", "the MinIO server binary, for -storage minio")
	flag.Parse()
	// envtest logs through controller-runtime; its start-up chatter is not the demo's output.
	ctrllog.SetLogger(ctrllog.Log.WithSink(ctrllog.NullLogSink{}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
}
