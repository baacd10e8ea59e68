package controller

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podBuilder makes test pods: running on node-a, with the named volumes as emptyDirs unless set otherwise.
type podBuilder struct{ pod corev1.Pod }

func newPod(ns, name string) *podBuilder {
	return &podBuilder{corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(name + "-uid"), Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}}
}

func (b *podBuilder) ann(k, v string) *podBuilder { b.pod.Annotations[k] = v; return b }

func (b *podBuilder) phase(p corev1.PodPhase) *podBuilder { b.pod.Status.Phase = p; return b }

func (b *podBuilder) vol(name string, src corev1.VolumeSource) *podBuilder {
	b.pod.Spec.Volumes = append(b.pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: src})
	return b
}

func (b *podBuilder) emptyDir(names ...string) *podBuilder {
	for _, n := range names {
		b.vol(n, corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}})
	}
	return b
}

func (b *podBuilder) pvc(name, claim string) *podBuilder {
	return b.vol(name, corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}})
}

func (b *podBuilder) build() corev1.Pod { return b.pod }

func volumeNames(sel Selection) []string {
	var out []string
	for _, v := range sel.Volumes {
		out = append(out, v.Pod+"/"+v.Volume)
	}
	return out
}

func TestSelectVolumes(t *testing.T) {
	block := corev1.PersistentVolumeBlock
	pvcs := map[string]*corev1.PersistentVolumeClaim{
		"ns/raw": {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "raw"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeMode: &block}},
	}
	all := corev1.VolumeSource{}
	for _, tc := range []struct {
		name        string
		pod         corev1.Pod
		defaultAll  bool
		want        []string
		skipped     []string // volume: reason fragment
		warnings    []string
		wantExclude []string
		excluded    []string // the install's default-excluded volumes
	}{
		{name: "straddle annotation", pod: newPod("ns", "p").emptyDir("a", "b", "c").ann(AnnotationBackupVolumes, "a, c").build(), want: []string{"p/a", "p/c"}},
		{name: "velero annotation", pod: newPod("ns", "p").emptyDir("a", "b").ann(VeleroAnnotationBackupVolumes, "b").build(), want: []string{"p/b"}},
		{name: "both annotations", pod: newPod("ns", "p").emptyDir("a", "b", "c").ann(AnnotationBackupVolumes, "a").ann(VeleroAnnotationBackupVolumes, "b,a").build(), want: []string{"p/a", "p/b"}},
		{name: "no annotation, opt-in", pod: newPod("ns", "p").emptyDir("a").build()},
		{name: "default-all with excludes", defaultAll: true, pod: newPod("ns", "p").emptyDir("a", "b", "c", "d").ann(AnnotationBackupVolumesExcludes, "b").ann(VeleroAnnotationBackupVolumesExcludes, "d").build(), want: []string{"p/a", "p/c"}},
		{name: "default-all skips the install's excluded volumes", defaultAll: true, excluded: []string{"istio-envoy", "istio-data"},
			pod: newPod("ns", "p").emptyDir("app", "istio-envoy", "istio-data", "cache").ann(AnnotationBackupVolumesExcludes, "cache").build(), want: []string{"p/app"}},
		{name: "the opt-in annotation takes an excluded volume back under default-all", defaultAll: true, excluded: []string{"istio-envoy", "istio-data"},
			pod: newPod("ns", "p").emptyDir("app", "istio-envoy", "istio-data").ann(VeleroAnnotationBackupVolumes, "istio-data").build(), want: []string{"p/app", "p/istio-data"}},
		{name: "excluded volumes named by opt-in are taken", excluded: []string{"istio-data"},
			pod: newPod("ns", "p").emptyDir("app", "istio-data").ann(AnnotationBackupVolumes, "istio-data").build(), want: []string{"p/istio-data"}},
		{name: "excludes ignored when opt-in", pod: newPod("ns", "p").emptyDir("a", "b").ann(AnnotationBackupVolumes, "a,b").ann(AnnotationBackupVolumesExcludes, "b").build(), want: []string{"p/a", "p/b"}},
		{name: "missing names warn", pod: newPod("ns", "p").emptyDir("a").ann(AnnotationBackupVolumes, "a,gone").ann(VeleroAnnotationBackupVolumesExcludes, "alsogone").build(), want: []string{"p/a"},
			warnings: []string{`pod ns/p has no volume "gone"`, `pod ns/p has no volume "alsogone"`}},
		{name: "never backed up kinds", defaultAll: true, pod: newPod("ns", "p").
			vol("hp", corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}).
			vol("sec", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}).
			vol("cm", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}).
			vol("proj", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}).
			vol("down", corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}).
			pvc("blk", "raw").pvc("data", "fs").emptyDir("scratch").vol("other", all).build(),
			want:    []string{"p/data", "p/scratch", "p/other"},
			skipped: []string{"hp: hostPath", "sec: secret", "cm: configMap", "proj: projected", "down: downwardAPI", "blk: volumeMode Block"}},
		{name: "secret named in annotation is skipped", pod: newPod("ns", "p").vol("sec", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{}}).ann(AnnotationBackupVolumes, "sec").build(),
			skipped: []string{"sec: secret"}},
		{name: "pod not running", pod: newPod("ns", "p").emptyDir("a").ann(AnnotationBackupVolumes, "a").phase(corev1.PodPending).build(), skipped: []string{": Pending"}},
		{name: "pod not running and not chosen is not listed", pod: newPod("ns", "p").emptyDir("a").phase(corev1.PodSucceeded).build()},
		{name: "exclude patterns", pod: newPod("ns", "p").emptyDir("a").ann(AnnotationBackupVolumes, "a").ann(AnnotationExcludePatterns, "*.tmp, cache/**,").build(), want: []string{"p/a"}, wantExclude: []string{"*.tmp", "cache/**"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel := SelectVolumes([]corev1.Pod{tc.pod}, pvcs, VolumeDefaults{All: tc.defaultAll, Excluded: tc.excluded})
			if got := volumeNames(sel); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("volumes %v, want %v", got, tc.want)
			}
			if len(sel.Skipped) != len(tc.skipped) {
				t.Fatalf("skipped %+v, want %v", sel.Skipped, tc.skipped)
			}
			for i, s := range sel.Skipped {
				vol, reason, _ := strings.Cut(tc.skipped[i], ": ")
				if s.Volume != vol || !strings.Contains(s.Reason, reason) || s.Namespace != "ns" || s.Pod != "p" {
					t.Errorf("skip %d is %+v, want volume %q with reason containing %q", i, s, vol, reason)
				}
			}
			if len(sel.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings %q, want %q", sel.Warnings, tc.warnings)
			}
			for i, w := range sel.Warnings {
				if !strings.Contains(w, tc.warnings[i]) {
					t.Errorf("warning %q, want one containing %q", w, tc.warnings[i])
				}
			}
			for _, v := range sel.Volumes {
				if !reflect.DeepEqual(v.ExcludePatterns, tc.wantExclude) {
					t.Errorf("exclude patterns %q, want %q", v.ExcludePatterns, tc.wantExclude)
				}
				if v.Node != "node-a" || v.PodUID != "p-uid" || v.Namespace != "ns" {
					t.Errorf("planned volume %+v", v)
				}
				if (v.Volume == "data") != (v.PVC == "fs") {
					t.Errorf("volume %s has PVC %q", v.Volume, v.PVC)
				}
			}
		})
	}
}

func TestNamespaceSelected(t *testing.T) {
	for _, tc := range []struct {
		inc, exc []string
		ns       string
		want     bool
	}{
		{nil, nil, "a", true},
		{[]string{"*"}, nil, "a", true},
		{[]string{"*"}, []string{"a"}, "a", false},
		{[]string{"a", "b"}, nil, "b", true},
		{[]string{"a"}, nil, "b", false},
		{nil, []string{"b"}, "a", true},
		{[]string{"a"}, []string{"a"}, "a", false},
	} {
		if got := NamespaceSelected(tc.inc, tc.exc, tc.ns); got != tc.want {
			t.Errorf("include %v exclude %v ns %s: %v, want %v", tc.inc, tc.exc, tc.ns, got, tc.want)
		}
	}
}

func TestPodVolumeBackupName(t *testing.T) {
	dns := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	long := strings.Repeat("b", 62) + "-" + strings.Repeat("c", 40)
	for _, backup := range []string{"nightly", long, strings.Repeat("x", 51) + "-y"} {
		a := PodVolumeBackupName(backup, "uid-1", "data")
		if a != PodVolumeBackupName(backup, "uid-1", "data") {
			t.Fatal("name is not deterministic")
		}
		if len(a) > 63 || !dns.MatchString(a) {
			t.Errorf("name %q is not a DNS label", a)
		}
		if a == PodVolumeBackupName(backup, "uid-1", "logs") || a == PodVolumeBackupName(backup, "uid-2", "data") {
			t.Errorf("two volumes share the name %q", a)
		}
	}
	if got := PodVolumeBackupName("nightly", "u", "v"); !strings.HasPrefix(got, "nightly-") || len(got) != len("nightly-")+10 {
		t.Errorf("name %q", got)
	}
}
