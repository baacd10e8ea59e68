package hooks

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
)

// Executor runs a command in a container of a pod, streaming its output; a command that ran and exited
// non-zero is an error with an ExitStatus() int method (client-go's exec.CodeExitError).
type Executor interface {
	Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, stderr io.Writer) error
}

// PodExec runs commands through the API server's pods/exec subresource, over WebSockets, falling back to
// SPDY for API servers that do not upgrade WebSockets (as kubectl exec does).
type PodExec struct {
	Config *rest.Config
	// REST is a client of the core/v1 API (clientset.CoreV1().RESTClient()).
	REST rest.Interface
}

// Exec runs command in namespace/pod's container until it exits or ctx ends, which cancels the stream.
func (p *PodExec) Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, stderr io.Writer) error {
	u := p.REST.Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec).URL()
	spdy, err := remotecommand.NewSPDYExecutor(p.Config, "POST", u)
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", namespace, pod, err)
	}
	ws, err := remotecommand.NewWebSocketExecutor(p.Config, "GET", u.String())
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", namespace, pod, err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", namespace, pod, err)
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
}
