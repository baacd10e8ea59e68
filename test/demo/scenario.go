package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/straddle-io/straddle/controller"
	"github.com/straddle-io/straddle/test/kubeletsim"
	"github.com/straddle-io/straddle/test/trees"
)

// The seed scenario: namespace voting with a database (StatefulSet db, pod db-0, claim data-db-0) and a
// frontend (Deployment frontend, one pod with an emptyDir cache), each pod on its own node.
const (
	votingNS     = "voting"
	frontendPod  = "frontend-7c9d8b5f4-x2k4q"
	backupName   = "voting-1"
	restoreName  = "voting-1-restore"
	randomMiB    = 4
	databaseRows = 3000
)

// volumes are the scenario's data volumes, each to be backed up, restored and checked.
var volumes = []struct{ pod, volume, node string }{{"db-0", "data", "node-a"}, {frontendPod, "cache", "node-b"}}

// fillVoting writes the data of the scenario's volumes where the kubelet simulator mounts them: for the
// database, thousands of small row files, an application tree, and the same 4 MiB tablespace twice (a live
// file and its dump, which the repository stores once); for the frontend, a small tree and a 1 MiB bundle.
func fillVoting(pod *corev1.Pod, volume, dir string) error {
	switch volume {
	case "data":
		if err := trees.WriteSmallFiles(dir, databaseRows, 61); err != nil {
			return err
		}
		if err := trees.WriteMixed(dir, 61); err != nil {
			return err
		}
		if err := trees.WriteRandomFile(filepath.Join(dir, "ibdata1"), randomMiB<<20, 7, 0o600); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "dumps"), 0o750); err != nil {
			return err
		}
		return trees.WriteRandomFile(filepath.Join(dir, "dumps", "ibdata1.bak"), randomMiB<<20, 7, 0o600)
	case "cache":
		if err := trees.WriteSmallFiles(dir, 200, 62); err != nil {
			return err
		}
		if err := trees.WriteMixed(dir, 62); err != nil {
			return err
		}
		return trees.WriteRandomFile(filepath.Join(dir, "bundle.js.gz"), 1<<20, 9, 0o644)
	}
	return nil
}

// deployVoting creates what `kubectl apply` and the StatefulSet, Deployment and PV controllers would make of
// the scenario, waits for its pods to run, keeps a copy of the volumes as written, and annotates the pods.
func (d *demo) deployVoting(ctx context.Context) error {
	d.section("The app: namespace voting, a database with a claim and a frontend with an emptyDir")
	d.command("kubectl apply -f voting.yaml")
	for _, obj := range votingObjects() {
		if err := d.cl.Create(ctx, obj); err != nil {
			return check("the app deploys", fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err))
		}
		gvk, _ := d.cl.GroupVersionKindFor(obj)
		fmt.Fprintf(d.out, "%s/%s created\n", kindName(gvk.Group, gvk.Kind), obj.GetName())
	}
	d.note("no scheduler, StatefulSet or Deployment controller runs here: the demo creates their pods db-0 and %s", frontendPod)
	if err := check("the app's pods run", d.waitPodsRunning(ctx, len(volumes))); err != nil {
		return err
	}
	if err := d.getPods(ctx); err != nil {
		return err
	}
	for _, v := range volumes {
		dir, err := d.volumeDir(ctx, v.pod, v.volume)
		if err != nil {
			return check("the app's volumes are mounted", err)
		}
		files, size, err := countTree(dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "# %s/%s holds %d files, %s\n", v.pod, v.volume, files, humanBytes(size))
		copyDir := filepath.Join(d.dir, "original", v.pod, v.volume)
		if err := os.MkdirAll(filepath.Dir(copyDir), 0o755); err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, "cp", "-a", dir, copyDir).CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s: %v: %s", dir, err, out)
		}
		d.original[v.pod+"/"+v.volume] = copyDir
	}

	d.section("Opt the volumes in to backup (Velero's backup.velero.io annotations work too)")
	for _, v := range volumes {
		d.command(fmt.Sprintf("kubectl annotate pod -n %s %s %s=%s", votingNS, v.pod, controller.AnnotationBackupVolumes, v.volume))
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{controller.AnnotationBackupVolumes: v.volume}}})
		if err != nil {
			return err
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: votingNS, Name: v.pod}}
		if err := d.cl.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return check("the pods are annotated", fmt.Errorf("annotate pod %s: %w", v.pod, err))
		}
		fmt.Fprintf(d.out, "pod/%s annotated\n", v.pod)
	}
	return nil
}

// votingObjects are the scenario's objects, in the order kubectl would create them.
func votingObjects() []client.Object {
	one := int32(1)
	noToken := false
	dbLabels, feLabels := map[string]string{"app": "db"}, map[string]string{"app": "frontend"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: votingNS}, Spec: appsv1.StatefulSetSpec{
		Replicas: &one, ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: dbLabels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dbLabels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "postgres", Image: "postgres:17"}}}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "frontend", Namespace: votingNS}, Spec: appsv1.DeploymentSpec{
		Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: feLabels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: feLabels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "vote", Image: "registry.example/vote:1"}}}}}}
	size := resource.MustParse("1Gi")
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-voting-db"}, Spec: corev1.PersistentVolumeSpec{
		Capacity: corev1.ResourceList{corev1.ResourceStorage: size}, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: votingNS, Name: "data-db-0"},
		PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.demo.straddle.io", VolumeHandle: "vol-voting-db"}}}}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-db-0", Namespace: votingNS}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}, VolumeName: pv.Name}}
	pod := func(name, node, image string, labels map[string]string, vol corev1.Volume) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: votingNS, Labels: labels}, Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &noToken,
			NodeSelector:                 map[string]string{kubeletsim.HostnameLabel: node},
			Containers:                   []corev1.Container{{Name: "app", Image: image, VolumeMounts: []corev1.VolumeMount{{Name: vol.Name, MountPath: "/var/lib/" + vol.Name}}}},
			Volumes:                      []corev1.Volume{vol}}}
	}
	db := pod("db-0", volumes[0].node, "postgres:17", dbLabels, corev1.Volume{Name: "data",
		VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name}}})
	fe := pod(frontendPod, volumes[1].node, "registry.example/vote:1", feLabels, corev1.Volume{Name: "cache",
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "frontend", Namespace: votingNS}, Spec: corev1.ServiceSpec{
		Selector: feLabels, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	return []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: votingNS}}, pv, pvc, sts, dep, svc, db, fe}
}

// kindName is how kubectl names a kind in its output: statefulset.apps, service.
func kindName(group, kind string) string {
	if group == "" {
		return strings.ToLower(kind)
	}
	return strings.ToLower(kind) + "." + group
}

// waitPodsRunning waits until namespace voting has want pods, all Running.
func (d *demo) waitPodsRunning(ctx context.Context, want int) error {
	return d.waitFor(ctx, fmt.Sprintf("%d pods of namespace %s to run", want, votingNS), 2*time.Minute, func() (bool, error) {
		var pods corev1.PodList
		if err := d.cl.List(ctx, &pods, client.InNamespace(votingNS)); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == want && len(pods.Items) == want, fmt.Errorf("%d of %d Running; simulator: %s", running, len(pods.Items), d.kubelet.Errors())
	})
}

// getPods prints what `kubectl get pods -n voting -o wide` would, in short.
func (d *demo) getPods(ctx context.Context) error {
	d.command("kubectl get pods -n " + votingNS + " -o wide")
	var pods corev1.PodList
	if err := d.cl.List(ctx, &pods, client.InNamespace(votingNS)); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	w := tabwriter.NewWriter(d.out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tSTATUS\tAGE\tNODE")
	for _, p := range pods.Items {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.Status.Phase, time.Since(p.CreationTimestamp.Time).Round(time.Second), p.Spec.NodeName)
	}
	return w.Flush()
}

// volumeDir is the folder on its node of a volume of a pod of namespace voting.
func (d *demo) volumeDir(ctx context.Context, pod, volume string) (string, error) {
	var p corev1.Pod
	if err := d.cl.Get(ctx, client.ObjectKey{Namespace: votingNS, Name: pod}, &p); err != nil {
		return "", fmt.Errorf("read pod %s: %w", pod, err)
	}
	return d.kubelet.VolumeDir(ctx, &p, volume)
}

// countTree counts the regular files below root and their bytes.
func countTree(root string) (files int, size int64, err error) {
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		files++
		size += fi.Size()
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("count the files of %s: %w", root, err)
	}
	return files, size, nil
}
