// Package hooks resolves a pod's backup exec hooks (from its annotations or the Backup's spec) and runs them
// through the API server's pods/exec.
package hooks

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// DefaultTimeout is how long a hook runs when neither its annotation nor its spec says.
const DefaultTimeout = 30 * time.Second

// Annotation prefixes (contract, DESIGN §6): <phase>.hook.backup.straddle.io/<key>, and Velero's names too.
// Straddle's win over Velero's when a pod has both.
const (
	StraddleDomain = "hook.backup.straddle.io"
	VeleroDomain   = "hook.backup.velero.io"
)

// Annotation keys after the prefix.
const (
	KeyCommand   = "command"
	KeyContainer = "container"
	KeyTimeout   = "timeout"
	KeyOnError   = "on-error"
)

// Hook is one resolved exec hook of a pod. Problem, when set, is why the hook as written cannot run (bad JSON,
// unknown container): it fails without running.
type Hook struct {
	Phase     v1.HookPhase
	Index     int
	Source    string
	Container string
	Command   []string
	Timeout   time.Duration
	OnError   v1.HookErrorMode
	Problem   string
}

// Resolve returns the pod's pre or post hooks: those of its annotations for that phase if it has any (they
// replace the spec's for the pod, as in Velero), else those of every spec entry that selects the pod, in order.
func Resolve(pod *corev1.Pod, spec v1.BackupHooks, phase v1.HookPhase) []Hook {
	if h, ok := fromAnnotations(pod, phase); ok {
		return []Hook{h}
	}
	var out []Hook
	for _, rh := range spec.Resources {
		if !selects(rh, pod) {
			continue
		}
		list := rh.Pre
		if phase == v1.HookPhasePost {
			list = rh.Post
		}
		for _, h := range list {
			if h.Exec == nil {
				continue
			}
			out = append(out, fromSpec(pod, rh.Name, phase, h.Exec))
		}
	}
	for i := range out {
		out[i].Index = i
	}
	return out
}

func selects(rh v1.BackupResourceHookSpec, pod *corev1.Pod) bool {
	if slices.Contains(rh.ExcludedNamespaces, pod.Namespace) {
		return false
	}
	if len(rh.IncludedNamespaces) > 0 && !slices.Contains(rh.IncludedNamespaces, "*") && !slices.Contains(rh.IncludedNamespaces, pod.Namespace) {
		return false
	}
	if rh.LabelSelector == nil {
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(rh.LabelSelector)
	// An invalid selector selects nothing rather than everything.
	return err == nil && sel.Matches(labels.Set(pod.Labels))
}

func fromSpec(pod *corev1.Pod, name string, phase v1.HookPhase, e *v1.ExecHook) Hook {
	h := Hook{Phase: phase, Source: "spec.hooks " + name, Container: e.Container, Command: e.Command, Timeout: DefaultTimeout, OnError: v1.HookErrorFail}
	if e.Timeout != nil && e.Timeout.Duration > 0 {
		h.Timeout = e.Timeout.Duration
	}
	if e.OnError != "" {
		h.OnError = e.OnError
	}
	h.Container, h.Problem = container(pod, h.Container)
	if h.Problem == "" && len(h.Command) == 0 {
		h.Problem = "the hook has no command"
	}
	return h
}

// fromAnnotations reads one phase's hook from the pod's annotations, Straddle's names first, then Velero's.
func fromAnnotations(pod *corev1.Pod, phase v1.HookPhase) (Hook, bool) {
	for _, domain := range []string{StraddleDomain, VeleroDomain} {
		prefix := string(phase) + "." + domain + "/"
		cmd, ok := pod.Annotations[prefix+KeyCommand]
		if !ok {
			continue
		}
		h := Hook{Phase: phase, Source: "annotation " + prefix + KeyCommand, Timeout: DefaultTimeout, OnError: v1.HookErrorFail}
		var problems []string
		command, err := parseCommand(cmd)
		if err != nil {
			problems = append(problems, fmt.Sprintf("annotation %s: %v", prefix+KeyCommand, err))
		}
		h.Command = command
		if s, ok := pod.Annotations[prefix+KeyTimeout]; ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("annotation %s: %v", prefix+KeyTimeout, err))
			case d <= 0:
				problems = append(problems, fmt.Sprintf("annotation %s: %q is not a positive duration", prefix+KeyTimeout, s))
			default:
				h.Timeout = d
			}
		}
		if s, ok := pod.Annotations[prefix+KeyOnError]; ok {
			switch mode := v1.HookErrorMode(s); mode {
			case v1.HookErrorFail, v1.HookErrorContinue:
				h.OnError = mode
			default:
				problems = append(problems, fmt.Sprintf("annotation %s: %q is neither %s nor %s", prefix+KeyOnError, s, v1.HookErrorFail, v1.HookErrorContinue))
			}
		}
		var problem string
		h.Container, problem = container(pod, pod.Annotations[prefix+KeyContainer])
		if problem != "" {
			problems = append(problems, problem)
		}
		h.Problem = strings.Join(problems, "; ")
		return h, true
	}
	return Hook{}, false
}

// parseCommand takes a JSON array of strings, or (as Velero does) a plain string as a one-word command.
func parseCommand(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty command")
	}
	if !strings.HasPrefix(s, "[") {
		return []string{s}, nil
	}
	var cmd []string
	if err := json.Unmarshal([]byte(s), &cmd); err != nil {
		return nil, fmt.Errorf("not a JSON array of strings: %w", err)
	}
	if len(cmd) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	return cmd, nil
}

// container checks the named container is in the pod; empty names the pod's first container.
func container(pod *corev1.Pod, name string) (string, string) {
	if name == "" {
		if len(pod.Spec.Containers) == 0 {
			return "", "the pod has no containers"
		}
		return pod.Spec.Containers[0].Name, ""
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return name, ""
		}
	}
	return name, fmt.Sprintf("the pod has no container %q", name)
}
