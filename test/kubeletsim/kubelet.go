// Package kubeletsim is the one fake part of a local Straddle cluster (the e2e tests' and `make demo`'s): it
// does for pods what the scheduler, the kubelets, the PV controller and the namespace controller would on a
// control plane that runs only kube-apiserver and etcd. Everything else is the real program.
package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// FillFunc writes the fixture of one data volume (emptyDir or PVC) of pod into dir, which exists and is
// empty. It runs once per pod volume, on the simulator's goroutine, before the pod turns Running.
type FillFunc func(pod *corev1.Pod, volume, dir string) error

// Plugin folders of the kubelet's pods directory (DESIGN §7): a volume lives at
// <pods dir>/<pod UID>/volumes/<plugin dir>/<name>, and a CSI volume's files below <pv name>/mount.
const (
	pluginEmptyDir    = "kubernetes.io~empty-dir"
	pluginCSI         = "kubernetes.io~csi"
	pluginLocal       = "kubernetes.io~local-volume"
	pluginSecret      = "kubernetes.io~secret"
	pluginConfigMap   = "kubernetes.io~configmap"
	pluginProjected   = "kubernetes.io~projected"
	pluginDownwardAPI = "kubernetes.io~downward-api"
)

// HostnameLabel is the node label a pod's nodeSelector names to be placed on that node.
const HostnameLabel = "kubernetes.io/hostname"

// Options shape the simulator.
type Options struct {
	// Nodes are the simulated nodes, which must exist as Node objects.
	Nodes []string
	// PodsDir is the kubelet pods directory of a node (its node-agent's --host-pods-dir).
	PodsDir func(node string) string
	// Fill writes a data volume's fixture; nil leaves data volumes empty.
	Fill FillFunc
	// Place picks the node of a pod that names none in its nodeSelector; nil places round-robin.
	Place func(pod *corev1.Pod) string
	// LogPath is the file the simulator logs what it does to.
	LogPath string
	// RestoreHelper is the straddle-restore-helper binary run as a restored pod's restore-wait container.
	RestoreHelper string
}

// Kubelet is the one fake part of the cluster: it does for pods what the scheduler, the kubelets and the PV
// controller would. It binds a pod without a node (its nodeSelector's hostname, else Options.Place, else
// round-robin) through pods/binding; for a bound pod it makes every volume's folder in its node's pods
// directory, marks a PVC Bound, fills data volumes with the test's fixture, and sets the pod Running. A pod
// being deleted loses its folder and is removed, as a kubelet confirms a graceful delete.
type Kubelet struct {
	opts Options
	cs   kubernetes.Interface
	pods cache.Indexer

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	next     int                  // round-robin position
	chosen   map[types.UID]string // the round-robin choice per pod, so a retried bind does not move the rotation
	started  int                  // pods set Running so far, for their IPs
	prepared map[types.UID]string // pods whose folders exist and which were set Running, by node
	failures map[string]string    // last error per pod, for a failed test's dump
	helpers  map[types.UID]*HelperRun
	log      *os.File
	stops    []func() // run by Stop, last first
}

// Start runs the simulator until Stop.
func Start(cfg *rest.Config, opts Options) (_ *Kubelet, err error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubelet simulator client: %w", err)
	}
	log, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the kubelet simulator's log: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kubelet{opts: opts, cs: cs, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}),
		prepared: map[types.UID]string{}, helpers: map[types.UID]*HelperRun{}, chosen: map[types.UID]string{}, failures: map[string]string{}, log: log}
	k.stops = append(k.stops, func() { log.Close() }, cancel)
	defer func() {
		if err != nil {
			k.Stop()
		}
	}()
	factory := informers.NewSharedInformerFactory(cs, 0)
	k.stops = append(k.stops, factory.Shutdown)
	inf := factory.Core().V1().Pods().Informer()
	poke := func(any) { k.poke() }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke}); err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	k.pods = inf.GetIndexer()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, errors.New("the kubelet simulator's pod cache did not sync")
	}
	if err := k.startExec(ctx); err != nil {
		return nil, err
	}
	go k.run(ctx)
	k.stops = append(k.stops, func() {
		k.cancel()
		<-k.done
	})
	return k, nil
}

// Stop ends the simulator: its loop, its exec endpoints and its pod watch. Pods and folders stay.
func (k *Kubelet) Stop() {
	for i := len(k.stops) - 1; i >= 0; i-- {
		k.stops[i]()
	}
	k.stops = nil
}

func (k *Kubelet) poke() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// run syncs every pod on each change and every half second, so a step that failed (a conflict, a PVC not
// created yet) is retried without an event.
func (k *Kubelet) run(ctx context.Context) {
	defer close(k.done)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
		case <-tick.C:
		}
		objs := k.pods.List()
		pods := make([]*corev1.Pod, 0, len(objs))
		for _, o := range objs {
			pods = append(pods, o.(*corev1.Pod))
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].CreationTimestamp.Before(&pods[j].CreationTimestamp) })
		for _, pod := range pods {
			if ctx.Err() != nil {
				return
			}
			key := pod.Namespace + "/" + pod.Name
			err := k.sync(ctx, pod)
			k.mu.Lock()
			if err != nil && ctx.Err() == nil {
				if k.failures[key] != err.Error() {
					k.logf("pod %s: %v (retrying)", key, err)
				}
				k.failures[key] = err.Error()
			} else {
				delete(k.failures, key)
			}
			k.mu.Unlock()
		}
	}
}

func (k *Kubelet) logf(format string, args ...any) {
	fmt.Fprintf(k.log, "%s %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// Errors describes the pods the simulator cannot get Running, for a failed test's dump.
func (k *Kubelet) Errors() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for pod, err := range k.failures {
		fmt.Fprintf(&b, "kubelet simulator: pod %s: %s\n", pod, err)
	}
	return b.String()
}

func (k *Kubelet) sync(ctx context.Context, pod *corev1.Pod) error {
	switch {
	case pod.DeletionTimestamp != nil:
		return k.remove(ctx, pod)
	case pod.Spec.NodeName == "":
		return k.bind(ctx, pod)
	}
	k.mu.Lock()
	_, done := k.prepared[pod.UID]
	k.mu.Unlock()
	if done {
		return nil
	}
	if !slices.Contains(k.opts.Nodes, pod.Spec.NodeName) {
		return fmt.Errorf("bound to node %s, which has no simulated kubelet", pod.Spec.NodeName)
	}
	if IsRestored(pod) {
		return k.syncRestored(ctx, pod)
	}
	for _, vol := range pod.Spec.Volumes {
		if err := k.makeVolume(ctx, pod, vol); err != nil {
			return fmt.Errorf("volume %s: %w", vol.Name, err)
		}
	}
	if err := k.setRunning(ctx, pod); err != nil {
		return err
	}
	k.mu.Lock()
	k.prepared[pod.UID] = pod.Spec.NodeName
	k.mu.Unlock()
	k.logf("pod %s/%s (uid %s) Running on %s", pod.Namespace, pod.Name, pod.UID, pod.Spec.NodeName)
	return nil
}

// bind places the pod as the scheduler would, through the pods/binding subresource.
func (k *Kubelet) bind(ctx context.Context, pod *corev1.Pod) error {
	node := pod.Spec.NodeSelector[HostnameLabel]
	if node == "" && k.opts.Place != nil {
		node = k.opts.Place(pod)
	}
	if node == "" {
		k.mu.Lock()
		node = k.chosen[pod.UID]
		if node == "" {
			node = k.opts.Nodes[k.next%len(k.opts.Nodes)]
			k.next++
			k.chosen[pod.UID] = node
		}
		k.mu.Unlock()
	}
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target: corev1.ObjectReference{Kind: "Node", Name: node}}
	if err := k.cs.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("bind to %s: %w", node, err)
	}
	k.logf("pod %s/%s bound to %s", pod.Namespace, pod.Name, node)
	return nil
}

// remove confirms a graceful delete: the pod's folder goes, then the object.
func (k *Kubelet) remove(ctx context.Context, pod *corev1.Pod) error {
	if pod.Spec.NodeName != "" && slices.Contains(k.opts.Nodes, pod.Spec.NodeName) {
		if err := os.RemoveAll(filepath.Join(k.opts.PodsDir(pod.Spec.NodeName), string(pod.UID))); err != nil {
			return fmt.Errorf("remove the pod's folder: %w", err)
		}
	}
	zero := int64(0)
	err := k.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
		Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete: %w", err)
	}
	k.mu.Lock()
	delete(k.prepared, pod.UID)
	k.mu.Unlock()
	return nil
}

// makeVolume makes the folder of one volume where the kubelet would mount it, and fills it.
func (k *Kubelet) makeVolume(ctx context.Context, pod *corev1.Pod, vol corev1.Volume) error {
	_, err := k.makeVolumeFolder(ctx, pod, vol, true)
	return err
}

// makeVolumeFolder makes the folder of one volume and returns it ("" for a volume without one); with fill,
// data volumes get the test's fixture.
func (k *Kubelet) makeVolumeFolder(ctx context.Context, pod *corev1.Pod, vol corev1.Volume, fill bool) (string, error) {
	plugin, name, err := k.volumeLocation(ctx, pod, vol, true)
	if err != nil || plugin == "" {
		return "", err
	}
	dir := volumePath(k.opts.PodsDir(pod.Spec.NodeName), pod.UID, plugin, name)
	return dir, k.fillVolume(ctx, pod, vol, dir, fill)
}

// fillVolume writes a volume's content into its fresh folder: Secret and ConfigMap keys, and with fill the
// fixture of a data volume. A restored pod's data volume starts empty: filling it is the node-agent's job.
func (k *Kubelet) fillVolume(ctx context.Context, pod *corev1.Pod, vol corev1.Volume, dir string, fill bool) error {
	// Start from nothing, so a retry after a half-done fill writes exactly the fixture.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	switch {
	case vol.EmptyDir != nil:
		// The kubelet makes emptyDir world-writable, so any container user can use it.
		if err := os.Chmod(dir, 0o777); err != nil || !fill {
			return err
		}
		return k.fill(pod, vol.Name, dir)
	case vol.PersistentVolumeClaim != nil:
		if !fill {
			return nil
		}
		return k.fill(pod, vol.Name, dir)
	case vol.Secret != nil:
		sec, err := k.cs.CoreV1().Secrets(pod.Namespace).Get(ctx, vol.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read Secret %s: %w", vol.Secret.SecretName, err)
		}
		return writeKeys(dir, sec.Data)
	case vol.ConfigMap != nil:
		cm, err := k.cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, vol.ConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read ConfigMap %s: %w", vol.ConfigMap.Name, err)
		}
		data := map[string][]byte{}
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		return writeKeys(dir, data)
	}
	return nil
}

func (k *Kubelet) fill(pod *corev1.Pod, volume, dir string) error {
	if k.opts.Fill == nil {
		return nil
	}
	if err := k.opts.Fill(pod, volume, dir); err != nil {
		return fmt.Errorf("fill from the fixture: %w", err)
	}
	return nil
}

func writeKeys(dir string, data map[string][]byte) error {
	for key, value := range data {
		if err := os.WriteFile(filepath.Join(dir, key), value, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// volumeLocation says in which plugin folder, under which name, the kubelet mounts vol; an empty plugin
// means the volume has no folder in the pods directory (hostPath). With bindClaim, a claim's status is set
// Bound, as the PV controller would; the claim must name its volume (spec.volumeName).
func (k *Kubelet) volumeLocation(ctx context.Context, pod *corev1.Pod, vol corev1.Volume, bindClaim bool) (plugin, name string, err error) {
	switch {
	case vol.EmptyDir != nil:
		return pluginEmptyDir, vol.Name, nil
	case vol.Secret != nil:
		return pluginSecret, vol.Name, nil
	case vol.ConfigMap != nil:
		return pluginConfigMap, vol.Name, nil
	case vol.Projected != nil:
		return pluginProjected, vol.Name, nil
	case vol.DownwardAPI != nil:
		return pluginDownwardAPI, vol.Name, nil
	case vol.HostPath != nil:
		return "", "", nil
	case vol.PersistentVolumeClaim != nil:
		return k.claimLocation(ctx, pod.Namespace, vol.PersistentVolumeClaim.ClaimName, bindClaim)
	}
	return "", "", fmt.Errorf("the simulator does not mount this kind of volume")
}

func (k *Kubelet) claimLocation(ctx context.Context, namespace, claim string, bind bool) (plugin, name string, err error) {
	pvc, err := k.cs.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("read claim %s: %w", claim, err)
	}
	if pvc.Spec.VolumeName == "" {
		if !bind {
			return "", "", fmt.Errorf("claim %s names no volume (spec.volumeName) yet", claim)
		}
		if pvc, err = k.provision(ctx, pvc); err != nil {
			return "", "", err
		}
	}
	pv, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("read volume %s of claim %s: %w", pvc.Spec.VolumeName, claim, err)
	}
	if bind {
		if err := k.bindClaim(ctx, pvc, pv); err != nil {
			return "", "", err
		}
	}
	switch {
	case pv.Spec.CSI != nil:
		return pluginCSI, filepath.Join(pv.Name, "mount"), nil
	case pv.Spec.Local != nil:
		return pluginLocal, pv.Name, nil
	}
	return "", "", fmt.Errorf("volume %s is neither CSI nor local; the simulator mounts only those", pv.Name)
}

// bindClaim marks the claim and its volume Bound.
func (k *Kubelet) bindClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) error {
	if pv.Status.Phase != corev1.VolumeBound {
		pv = pv.DeepCopy()
		pv.Status.Phase = corev1.VolumeBound
		if _, err := k.cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("mark volume %s Bound: %w", pv.Name, err)
		}
	}
	if pvc.Status.Phase == corev1.ClaimBound {
		return nil
	}
	pvc = pvc.DeepCopy()
	pvc.Status.Phase = corev1.ClaimBound
	pvc.Status.AccessModes = pv.Spec.AccessModes
	pvc.Status.Capacity = pv.Spec.Capacity
	if _, err := k.cs.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("mark claim %s Bound: %w", pvc.Name, err)
	}
	return nil
}

// setRunning writes the status a kubelet reports once every container runs and is ready.
func (k *Kubelet) setRunning(ctx context.Context, cached *corev1.Pod) error {
	pod, err := k.cs.CoreV1().Pods(cached.Namespace).Get(ctx, cached.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the pod: %w", err)
	}
	if pod.UID != cached.UID {
		return errors.New("the pod was replaced")
	}
	now := metav1.Now()
	nodeIndex := slices.Index(k.opts.Nodes, pod.Spec.NodeName) + 1
	k.mu.Lock()
	k.started++
	ip := fmt.Sprintf("10.244.%d.%d", nodeIndex, k.started%250+2)
	k.mu.Unlock()
	st := &pod.Status
	st.Phase = corev1.PodRunning
	st.HostIP = fmt.Sprintf("192.168.0.%d", nodeIndex)
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	st.PodIP = ip
	st.PodIPs = []corev1.PodIP{{IP: ip}}
	st.StartTime = &now
	st.Conditions = nil
	for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	started := true
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image,
			ContainerID: "sim://" + string(pod.UID) + "/" + c.Name, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}})
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image,
			ContainerID: "sim://" + string(pod.UID) + "/" + c.Name, Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
	}
	if _, err := k.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set the pod Running: %w", err)
	}
	return nil
}

// VolumeDir is the folder on its node of the volume of a bound pod, as the pod's node-agent finds it.
func (k *Kubelet) VolumeDir(ctx context.Context, pod *corev1.Pod, volume string) (string, error) {
	i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == volume })
	if i < 0 {
		return "", fmt.Errorf("pod %s/%s has no volume %s", pod.Namespace, pod.Name, volume)
	}
	plugin, name, err := k.volumeLocation(ctx, pod, pod.Spec.Volumes[i], false)
	if err != nil || plugin == "" {
		return "", fmt.Errorf("pod %s/%s volume %s has no folder on its node: %v", pod.Namespace, pod.Name, volume, err)
	}
	return volumePath(k.opts.PodsDir(pod.Spec.NodeName), pod.UID, plugin, name), nil
}

// volumePath is where the kubelet of a node with pods directory podsDir mounts a volume of a pod.
func volumePath(podsDir string, uid types.UID, plugin, name string) string {
	return filepath.Join(podsDir, string(uid), "volumes", plugin, name)
}
