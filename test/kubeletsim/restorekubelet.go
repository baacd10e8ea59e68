package kubeletsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RestoreWait is the init container a restore injects first into a restored pod with volumes.
const RestoreWait = "restore-wait"

// RestoresMount is where the restore-wait container mounts each restored volume, by name.
const RestoresMount = "/restores/"

// HelperRun is one run of the real restore helper as a restored pod's restore-wait container.
type HelperRun struct {
	done chan struct{}
	// ExitCode and Output are the helper's, once it ended.
	ExitCode int
	Output   string
	// Listing is each restored volume's tree (by volume name) at the instant the helper exited 0.
	Listing map[string]map[string]string
	// Inits are the runs of the init containers after restore-wait whose image is LocalInitImage.
	Inits []InitRun
}

// Done is closed when the helper has exited; ExitCode, Output and Listing are set before.
func (r *HelperRun) Done() <-chan struct{} { return r.done }

// IsRestored says whether a restore gave the pod its restore-wait init container.
func IsRestored(pod *corev1.Pod) bool {
	return len(pod.Spec.InitContainers) > 0 && pod.Spec.InitContainers[0].Name == RestoreWait
}

// syncRestored runs a restored pod as a kubelet would: empty volume folders, then the restore-wait init
// container (the real helper binary, with its mounts as symlinks in a restores folder) while the pod stays
// Pending, then Running when it exited 0; a failed helper leaves the pod Pending with its exit code.
func (k *Kubelet) syncRestored(ctx context.Context, pod *corev1.Pod) error {
	k.mu.Lock()
	run := k.helpers[pod.UID]
	k.mu.Unlock()
	if run == nil {
		return k.startHelper(ctx, pod)
	}
	select {
	case <-run.done:
	default:
		return nil
	}
	if run.ExitCode != 0 {
		if err := k.setInitFailed(ctx, pod, run); err != nil {
			return err
		}
		k.logf("pod %s/%s: restore-wait exited %d: %s", pod.Namespace, pod.Name, run.ExitCode, run.Output)
	} else {
		if err := k.setRunning(ctx, pod); err != nil {
			return err
		}
		k.logf("pod %s/%s (uid %s) Running on %s after restore-wait", pod.Namespace, pod.Name, pod.UID, pod.Spec.NodeName)
	}
	k.mu.Lock()
	k.prepared[pod.UID] = pod.Spec.NodeName
	k.mu.Unlock()
	return nil
}

func (k *Kubelet) startHelper(ctx context.Context, pod *corev1.Pod) error {
	dirs := map[string]string{}
	for _, vol := range pod.Spec.Volumes {
		dir, err := k.makeVolumeFolder(ctx, pod, vol, false)
		if err != nil {
			return fmt.Errorf("volume %s: %w", vol.Name, err)
		}
		dirs[vol.Name] = dir
	}
	init := pod.Spec.InitContainers[0]
	restores := filepath.Join(k.opts.PodsDir(pod.Spec.NodeName), string(pod.UID), "restore-wait")
	if err := os.RemoveAll(restores); err != nil {
		return err
	}
	if err := os.MkdirAll(restores, 0o755); err != nil {
		return err
	}
	volumes := map[string]string{}
	for _, m := range init.VolumeMounts {
		name, ok := strings.CutPrefix(m.MountPath, RestoresMount)
		if !ok {
			continue
		}
		dir := dirs[m.Name]
		if dir == "" {
			return fmt.Errorf("restore-wait mounts %s, which has no folder", m.Name)
		}
		if err := os.Symlink(dir, filepath.Join(restores, name)); err != nil {
			return err
		}
		volumes[name] = dir
	}
	args := append(append([]string{}, init.Args...), "--restores-dir", restores)
	if err := k.setInitRunning(ctx, pod); err != nil {
		return err
	}
	run := &HelperRun{done: make(chan struct{})}
	k.mu.Lock()
	k.helpers[pod.UID] = run
	k.mu.Unlock()
	k.logf("pod %s/%s: restore-wait runs %s %q", pod.Namespace, pod.Name, k.opts.RestoreHelper, args)
	go func() {
		defer k.poke()
		defer close(run.done)
		var out bytes.Buffer
		cmd := exec.Command(k.opts.RestoreHelper, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := runAsContainerUser(cmd, pod, init, slices.Collect(maps.Values(volumes)))
		if err == nil {
			err = cmd.Run()
		}
		// The listing is taken before anything else happens, so it shows what the app would find at start.
		if err == nil {
			run.Listing = map[string]map[string]string{}
			for name, dir := range volumes {
				l, lerr := ListTree(dir)
				if lerr != nil {
					out.WriteString("e2e: list " + dir + ": " + lerr.Error())
				}
				run.Listing[name] = l
			}
		}
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			run.ExitCode = exit.ExitCode()
		case err != nil:
			run.ExitCode = -1
			out.WriteString(err.Error())
		}
		if err == nil {
			run.Inits = k.runLocalInits(pod)
		}
		run.Output = out.String()
	}()
	return nil
}

// RunAsUserAnnotation on a pod has the simulator run its restore-wait as the container's securityContext
// user, as a kubelet does. Only on request: other tests' folders are root's with mode 0700 or 0750, as the
// test process (root) made them, and their restored volume roots too.
const RunAsUserAnnotation = "e2e.straddle.io/run-as-container-user"

// runAsContainerUser sets cmd to run as container c's runAsUser (group: runAsGroup, else the same number)
// when pod asks for it and the simulator may switch users (it runs as root). A kubelet bind-mounts each
// volume into the container, so the volume folders' parents on the node do not matter there; here the
// helper reaches the folders through symlinks, so their parents and the binary's get search permission
// for others.
func runAsContainerUser(cmd *exec.Cmd, pod *corev1.Pod, c corev1.Container, dirs []string) error {
	sc := c.SecurityContext
	if pod.Annotations[RunAsUserAnnotation] != "true" || sc == nil || sc.RunAsUser == nil || os.Geteuid() != 0 {
		return nil
	}
	gid := *sc.RunAsUser
	if sc.RunAsGroup != nil {
		gid = *sc.RunAsGroup
	}
	for _, p := range append(dirs, cmd.Path) {
		for d := filepath.Dir(p); d != filepath.Dir(d); d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				return err
			}
			if fi.Mode().Perm()&0o001 == 0 {
				if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
					return err
				}
			}
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(*sc.RunAsUser), Gid: uint32(gid)}}
	return nil
}

// Helper returns the restore-wait run of a pod, nil if none started.
func (k *Kubelet) Helper(uid string) *HelperRun {
	k.mu.Lock()
	defer k.mu.Unlock()
	for u, r := range k.helpers {
		if string(u) == uid {
			return r
		}
	}
	return nil
}

// setInitRunning reports the pod Pending with its first init container running.
func (k *Kubelet) setInitRunning(ctx context.Context, cached *corev1.Pod) error {
	return k.updateStatus(ctx, cached, func(st *corev1.PodStatus, pod *corev1.Pod) {
		now := metav1.Now()
		st.Phase = corev1.PodPending
		st.StartTime = &now
		st.InitContainerStatuses = nil
		for i, c := range pod.Spec.InitContainers {
			cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}
			if i == 0 {
				cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
				cs.ContainerID = "sim://" + string(pod.UID) + "/" + c.Name
			}
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		}
	})
}

// setInitFailed reports the first init container terminated with the helper's exit code.
func (k *Kubelet) setInitFailed(ctx context.Context, cached *corev1.Pod, run *HelperRun) error {
	return k.updateStatus(ctx, cached, func(st *corev1.PodStatus, pod *corev1.Pod) {
		now := metav1.Now()
		st.Phase = corev1.PodPending
		if len(st.InitContainerStatuses) > 0 {
			st.InitContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(run.ExitCode), Reason: "Error", Message: run.Output, FinishedAt: now}}
		}
	})
}

func (k *Kubelet) updateStatus(ctx context.Context, cached *corev1.Pod, change func(*corev1.PodStatus, *corev1.Pod)) error {
	pod, err := k.cs.CoreV1().Pods(cached.Namespace).Get(ctx, cached.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the pod: %w", err)
	}
	if pod.UID != cached.UID {
		return errors.New("the pod was replaced")
	}
	change(&pod.Status, pod)
	if _, err := k.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update the pod's status: %w", err)
	}
	return nil
}

// provision gives a claim without a volume a new CSI PersistentVolume pvc-<claim UID> and binds them, as a
// dynamic provisioner and the PV controller would.
func (k *Kubelet) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (*corev1.PersistentVolumeClaim, error) {
	name := "pvc-" + string(pvc.UID)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.e2e.straddle.io", VolumeHandle: "handle-" + name}},
		},
	}
	if _, err := k.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("provision volume %s for claim %s: %w", name, pvc.Name, err)
	}
	pvc = pvc.DeepCopy()
	pvc.Spec.VolumeName = name
	updated, err := k.cs.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, pvc, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("bind claim %s to provisioned volume %s: %w", pvc.Name, name, err)
	}
	k.logf("claim %s/%s provisioned volume %s", pvc.Namespace, pvc.Name, name)
	return updated, nil
}

// ListTree maps every path below root to its type, mode, size and content hash, leaving out root itself.
func ListTree(root string) (map[string]string, error) {
	l := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		entry := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			entry += fmt.Sprintf(" %d %s", len(b), hex.EncodeToString(sum[:]))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			entry += " -> " + target
		}
		l[rel] = entry
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	return l, nil
}
