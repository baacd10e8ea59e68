package hooks

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func pod(ns string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db", Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}, {Name: "sidecar"}}},
	}
}

func TestResolveAnnotations(t *testing.T) {
	for _, c := range []struct {
		name        string
		annotations map[string]string
		phase       v1.HookPhase
		want        Hook
		none        bool
	}{
		{name: "defaults", phase: v1.HookPhasePre,
			annotations: map[string]string{"pre.hook.backup.straddle.io/command": `["sh","-c","sync"]`},
			want:        Hook{Container: "main", Command: []string{"sh", "-c", "sync"}, Timeout: 30 * time.Second, OnError: v1.HookErrorFail}},
		{name: "every key", phase: v1.HookPhasePost,
			annotations: map[string]string{"post.hook.backup.straddle.io/command": `["unfreeze"]`, "post.hook.backup.straddle.io/container": "sidecar",
				"post.hook.backup.straddle.io/timeout": "3s", "post.hook.backup.straddle.io/on-error": "Continue"},
			want: Hook{Container: "sidecar", Command: []string{"unfreeze"}, Timeout: 3 * time.Second, OnError: v1.HookErrorContinue}},
		{name: "velero names", phase: v1.HookPhasePre,
			annotations: map[string]string{"pre.hook.backup.velero.io/command": `["fsfreeze","--freeze","/data"]`, "pre.hook.backup.velero.io/timeout": "1m"},
			want:        Hook{Container: "main", Command: []string{"fsfreeze", "--freeze", "/data"}, Timeout: time.Minute, OnError: v1.HookErrorFail}},
		{name: "straddle wins over velero", phase: v1.HookPhasePre,
			annotations: map[string]string{"pre.hook.backup.velero.io/command": `["velero"]`, "pre.hook.backup.straddle.io/command": `["straddle"]`,
				"pre.hook.backup.velero.io/container": "sidecar"},
			want: Hook{Container: "main", Command: []string{"straddle"}, Timeout: 30 * time.Second, OnError: v1.HookErrorFail}},
		{name: "plain string is one word", phase: v1.HookPhasePre,
			annotations: map[string]string{"pre.hook.backup.straddle.io/command": "/flush.sh"},
			want:        Hook{Container: "main", Command: []string{"/flush.sh"}, Timeout: 30 * time.Second, OnError: v1.HookErrorFail}},
		{name: "other phase only", phase: v1.HookPhasePre,
			annotations: map[string]string{"post.hook.backup.straddle.io/command": `["x"]`}, none: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Resolve(pod("app", nil, c.annotations), v1.BackupHooks{}, c.phase)
			if c.none {
				if len(got) != 0 {
					t.Fatalf("got %+v, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d hooks, want 1", len(got))
			}
			h := got[0]
			if h.Problem != "" || h.Container != c.want.Container || !slices.Equal(h.Command, c.want.Command) || h.Timeout != c.want.Timeout || h.OnError != c.want.OnError || h.Phase != c.phase {
				t.Fatalf("got %+v, want %+v", h, c.want)
			}
		})
	}
}

func TestResolveProblems(t *testing.T) {
	for name, c := range map[string]struct {
		annotations map[string]string
		want        string
	}{
		"bad json":          {map[string]string{"pre.hook.backup.straddle.io/command": `["a",`}, "not a JSON array"},
		"empty array":       {map[string]string{"pre.hook.backup.straddle.io/command": `[]`}, "empty command"},
		"bad timeout":       {map[string]string{"pre.hook.backup.straddle.io/command": `["a"]`, "pre.hook.backup.straddle.io/timeout": "soon"}, "timeout"},
		"bad on-error":      {map[string]string{"pre.hook.backup.straddle.io/command": `["a"]`, "pre.hook.backup.straddle.io/on-error": "Ignore"}, "neither Fail nor Continue"},
		"no such container": {map[string]string{"pre.hook.backup.straddle.io/command": `["a"]`, "pre.hook.backup.straddle.io/container": "nope"}, `no container "nope"`},
	} {
		t.Run(name, func(t *testing.T) {
			got := Resolve(pod("app", nil, c.annotations), v1.BackupHooks{}, v1.HookPhasePre)
			if len(got) != 1 || !strings.Contains(got[0].Problem, c.want) {
				t.Fatalf("got %+v, want one hook with a problem saying %q", got, c.want)
			}
		})
	}
}

func TestResolveSpec(t *testing.T) {
	exec := func(cmd string) v1.BackupResourceHook {
		return v1.BackupResourceHook{Exec: &v1.ExecHook{Command: []string{cmd}}}
	}
	spec := v1.BackupHooks{Resources: []v1.BackupResourceHookSpec{
		{Name: "all", Pre: []v1.BackupResourceHook{exec("a1"), exec("a2")}, Post: []v1.BackupResourceHook{exec("a3")}},
		{Name: "db-only", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Pre: []v1.BackupResourceHook{{Exec: &v1.ExecHook{Command: []string{"d1"}, Container: "sidecar", OnError: v1.HookErrorContinue, Timeout: &metav1.Duration{Duration: time.Second}}}}},
		{Name: "in other", IncludedNamespaces: []string{"other"}, Pre: []v1.BackupResourceHook{exec("o1")}},
		{Name: "not in app", ExcludedNamespaces: []string{"app"}, IncludedNamespaces: []string{"*"}, Pre: []v1.BackupResourceHook{exec("x1")}},
	}}
	commands := func(hs []Hook) []string {
		var out []string
		for i, h := range hs {
			if h.Index != i {
				t.Errorf("hook %d has index %d", i, h.Index)
			}
			out = append(out, h.Command[0])
		}
		return out
	}
	if got := commands(Resolve(pod("app", map[string]string{"app": "db"}, nil), spec, v1.HookPhasePre)); !slices.Equal(got, []string{"a1", "a2", "d1"}) {
		t.Errorf("pre hooks of db in app: %v", got)
	}
	if got := commands(Resolve(pod("app", map[string]string{"app": "web"}, nil), spec, v1.HookPhasePre)); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("pre hooks of web in app: %v", got)
	}
	if got := commands(Resolve(pod("other", nil, nil), spec, v1.HookPhasePre)); !slices.Equal(got, []string{"a1", "a2", "o1", "x1"}) {
		t.Errorf("pre hooks in other: %v", got)
	}
	if got := commands(Resolve(pod("app", nil, nil), spec, v1.HookPhasePost)); !slices.Equal(got, []string{"a3"}) {
		t.Errorf("post hooks: %v", got)
	}
	d1 := Resolve(pod("app", map[string]string{"app": "db"}, nil), spec, v1.HookPhasePre)[2]
	if d1.Container != "sidecar" || d1.OnError != v1.HookErrorContinue || d1.Timeout != time.Second {
		t.Errorf("spec fields not kept: %+v", d1)
	}
	// Annotations replace the spec's hooks of their phase for the pod, and only of that phase.
	annotated := pod("app", nil, map[string]string{"pre.hook.backup.straddle.io/command": `["mine"]`})
	if got := commands(Resolve(annotated, spec, v1.HookPhasePre)); !slices.Equal(got, []string{"mine"}) {
		t.Errorf("annotated pre hooks: %v", got)
	}
	if got := commands(Resolve(annotated, spec, v1.HookPhasePost)); !slices.Equal(got, []string{"a3"}) {
		t.Errorf("annotated pod's post hooks: %v", got)
	}
}
