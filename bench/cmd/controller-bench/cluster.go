package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller"
)

const (
	installNamespace = "straddle"
	passwordSecret   = "straddle-repository-password"
	// writers is how many objects the benchmark creates or updates at once, as many kubelets and node-agents
	// would: the set-up is not what is measured, so it goes as fast as the API server takes it.
	writers = 16
)

// controlPlane is envtest's kube-apiserver and etcd with Straddle's CRDs, an admin client for the benchmark
// and a kubeconfig for the controller process.
type controlPlane struct {
	env        *envtest.Environment
	cfg        *rest.Config
	cl         client.Client
	kubeconfig string
}

func startControlPlane(assets, crds, dir string) (*controlPlane, error) {
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{crds}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", assets, err)
	}
	cp := &controlPlane{env: env}
	admin, err := env.AddUser(envtest.User{Name: "bench-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		cp.stop()
		return nil, fmt.Errorf("add the admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		cp.stop()
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	cp.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.kubeconfig, kubeconfig, 0o600); err != nil {
		cp.stop()
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		cp.stop()
		return nil, err
	}
	if err := v1.AddToScheme(scheme); err != nil {
		cp.stop()
		return nil, err
	}
	cp.cfg = rest.CopyConfig(admin.Config())
	// No client-side limit: the set-up and the node-agents' stand-in are not what is measured.
	cp.cfg.QPS, cp.cfg.Burst = -1, 0
	if cp.cl, err = client.New(cp.cfg, client.Options{Scheme: scheme}); err != nil {
		cp.stop()
		return nil, err
	}
	return cp, nil
}

func (cp *controlPlane) stop() { _ = cp.env.Stop() }

// workload is what the benchmark creates: nodes, namespaces of pods spread over the nodes, and claims.
type workload struct {
	nodes, pods, namespaces int
}

// volumes is how many volumes the backup takes: three per pod.
func (w workload) volumes() int { return 3 * w.pods }

// install creates the install namespace, the repository password and a filesystem storage location.
func (cp *controlPlane) install(ctx context.Context, repoDir string) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: installNamespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: installNamespace, Name: passwordSecret},
			Data: map[string][]byte{"password": []byte("bench-password")}},
		&v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: installNamespace, Name: "default"}, Spec: v1.BackupStorageLocationSpec{
			Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: repoDir}, Default: true,
			RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: passwordSecret}, Key: "password"},
		}},
	}
	for _, o := range objs {
		if err := cp.cl.Create(ctx, o); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// create makes the nodes, namespaces, claims and Running pods of w. Half of the pods opt their three volumes
// in by annotation (Velero's habit); the other half have a fourth volume excluded by annotation and rely on
// the backup's default-all. Every pod has one claim; the default-all half has a second one.
func (cp *controlPlane) create(ctx context.Context, w workload) error {
	for i := range w.nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(i)}}
		if err := cp.cl.Create(ctx, node); err != nil {
			return fmt.Errorf("create node %s: %w", node.Name, err)
		}
	}
	for i := range w.namespaces {
		if err := cp.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespaceName(i)}}); err != nil {
			return fmt.Errorf("create namespace %s: %w", namespaceName(i), err)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(writers)
	for i := range w.pods {
		g.Go(func() error { return cp.createPod(ctx, w, i) })
	}
	return g.Wait()
}

func (cp *controlPlane) createPod(ctx context.Context, w workload, i int) error {
	ns := namespaceName(i % w.namespaces)
	name := fmt.Sprintf("app-%04d", i)
	annotated := i%2 == 0
	claims := []string{name + "-data"}
	if !annotated {
		claims = append(claims, name+"-scratch")
	}
	for _, c := range claims {
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: c},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		if err := cp.cl.Create(ctx, pvc); err != nil {
			return fmt.Errorf("create claim %s/%s: %w", ns, c, err)
		}
	}
	claim := func(vol, c string) corev1.Volume {
		return corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}}
	}
	empty := func(vol string) corev1.Volume {
		return corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "bench", "shard": fmt.Sprint(i % 10)}},
		Spec: corev1.PodSpec{
			NodeName:   nodeName(i % w.nodes),
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0"}},
		},
	}
	if annotated {
		pod.Annotations = map[string]string{controller.VeleroAnnotationBackupVolumes: "data,logs,scratch"}
		pod.Spec.Volumes = []corev1.Volume{claim("data", claims[0]), empty("logs"), empty("scratch")}
	} else {
		pod.Annotations = map[string]string{controller.AnnotationBackupVolumesExcludes: "cache"}
		pod.Spec.Volumes = []corev1.Volume{claim("data", claims[0]), empty("logs"), claim("scratch", claims[1]), empty("cache")}
	}
	for _, v := range pod.Spec.Volumes {
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: "/" + v.Name})
	}
	if err := cp.cl.Create(ctx, pod); err != nil {
		return fmt.Errorf("create pod %s/%s: %w", ns, name, err)
	}
	// As the kubelet would once the containers run.
	pod.Status.Phase = corev1.PodRunning
	if err := cp.cl.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("set pod %s/%s Running: %w", ns, name, err)
	}
	return nil
}

func nodeName(i int) string      { return fmt.Sprintf("node-%02d", i) }
func namespaceName(i int) string { return fmt.Sprintf("bench-%d", i) }
