package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// execMaxRun kills a command the simulator runs for pods/exec that is still running this long after it
// started: a client that gives up closes its stream, which the kubelet's protocol does not pass on.
const execMaxRun = 2 * time.Minute

// startExec serves each simulated node's kubelet exec endpoint (the kubelet's streaming protocol, over HTTPS
// on 127.0.0.1) and points the Node at it (status.addresses InternalIP 127.0.0.1, status.daemonEndpoints'
// kubelet port), so the API server proxies pods/exec to it. With no --kubelet-certificate-authority the API
// server does not verify the kubelet's certificate, so a self-signed one serves.
func (k *Kubelet) startExec(ctx context.Context) error {
	for _, node := range k.opts.Nodes {
		mux := http.NewServeMux()
		mux.HandleFunc("/exec/{namespace}/{pod}/{container}", func(w http.ResponseWriter, req *http.Request) {
			k.serveExec(ctx, w, req)
		})
		srv := httptest.NewUnstartedServer(mux)
		srv.StartTLS()
		k.stops = append(k.stops, srv.Close)
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := k.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: "127.0.0.1"}}
			n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
			_, err = k.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("point node %s at its kubelet exec endpoint: %w", node, err)
		}
	}
	return nil
}

func (k *Kubelet) serveExec(ctx context.Context, w http.ResponseWriter, req *http.Request) {
	namespace, pod, container := req.PathValue("namespace"), req.PathValue("pod"), req.PathValue("container")
	opts, err := remotecommandserver.NewOptions(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	command := req.URL.Query()["command"]
	k.logf("exec in %s/%s container %s: %q", namespace, pod, container, command)
	remotecommandserver.ServeExec(w, req, &localExec{k: k, ctx: ctx, namespace: namespace}, pod, "", container, command, opts,
		time.Minute, 30*time.Second, remotecommandserver.SupportedStreamingProtocols)
}

// localExec runs an exec request's command as a local process in the pod's first data volume folder.
type localExec struct {
	k         *Kubelet
	ctx       context.Context
	namespace string
}

// ExecInContainer implements remotecommandserver.Executor.
func (e *localExec) ExecInContainer(_ context.Context, name string, _ string, container string, cmd []string, in io.Reader, out, errOut io.WriteCloser, _ bool, _ <-chan remotecommandserver.TerminalSize, _ time.Duration) error {
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	obj, ok, err := e.k.pods.GetByKey(e.namespace + "/" + name)
	if err != nil || !ok {
		return fmt.Errorf("pod %s/%s is not on this node: %v", e.namespace, name, err)
	}
	pod := obj.(*corev1.Pod)
	dir, err := e.k.execDir(pod)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, execMaxRun)
	defer cancel()
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Dir, c.Stdin, c.Stdout, c.Stderr = dir, in, out, errOut
	c.Env = append(c.Environ(), "POD="+e.namespace+"/"+name, "CONTAINER="+container)
	c.WaitDelay = time.Second
	start := time.Now()
	err = c.Run()
	e.k.logf("exec in %s/%s %q in %s ended after %s: %v", e.namespace, name, cmd, dir, time.Since(start).Round(time.Millisecond), err)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() >= 0 {
		return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
	}
	return err
}

// execDir is where a pod's exec commands run: its first data volume's folder (emptyDir or claim).
func (k *Kubelet) execDir(pod *corev1.Pod) (string, error) {
	for _, vol := range pod.Spec.Volumes {
		if vol.EmptyDir == nil && vol.PersistentVolumeClaim == nil {
			continue
		}
		plugin, name, err := k.volumeLocation(context.Background(), pod, vol, false)
		if err != nil {
			return "", err
		}
		return volumePath(k.opts.PodsDir(pod.Spec.NodeName), pod.UID, plugin, name), nil
	}
	return "", fmt.Errorf("pod %s/%s has no data volume to run in", pod.Namespace, pod.Name)
}

// LocalInitImage marks an init container the simulator runs, after restore-wait exited 0, as a local process
// in the pod's first data volume folder (restore init hooks); others are taken to succeed without running.
const LocalInitImage = "e2e.local/run-on-node"

// InitRun is one run of a local init container.
type InitRun struct {
	Name     string
	ExitCode int
	Output   string
}

// runLocalInits runs the pod's local init containers after restore-wait, in order, until one fails.
func (k *Kubelet) runLocalInits(pod *corev1.Pod) []InitRun {
	var runs []InitRun
	for _, c := range pod.Spec.InitContainers[1:] {
		if c.Image != LocalInitImage || len(c.Command) == 0 {
			continue
		}
		r := InitRun{Name: c.Name}
		dir, err := k.execDir(pod)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), execMaxRun)
			cmd := exec.CommandContext(ctx, c.Command[0], append(c.Command[1:], c.Args...)...)
			cmd.Dir = dir
			var out []byte
			out, err = cmd.CombinedOutput()
			cancel()
			r.Output = string(out)
		}
		var exitErr *exec.ExitError
		switch {
		case errors.As(err, &exitErr):
			r.ExitCode = exitErr.ExitCode()
		case err != nil:
			r.ExitCode, r.Output = -1, r.Output+err.Error()
		}
		k.logf("pod %s/%s: init container %s exited %d: %s", pod.Namespace, pod.Name, c.Name, r.ExitCode, r.Output)
		runs = append(runs, r)
		if r.ExitCode != 0 {
			break
		}
	}
	return runs
}
