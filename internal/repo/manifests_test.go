//go:build kubernetes

package repo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/spillway-dev/spillway/internal/discovery"
)

// manifestDir holds the Kubernetes manifests, relative to this package.
const manifestDir = "../../deploy/kubernetes"

// newObject returns an empty value of the API type for an apiVersion and
// kind, nil for one the manifests should not hold.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "batch/v1 CronJob":
		return &batchv1.CronJob{}
	case "rbac.authorization.k8s.io/v1 Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return &rbacv1.RoleBinding{}
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return &kustomization{}
	}
	return nil
}

// kustomization is the part of kustomize's Kustomization the manifests
// use; decoded strictly, so that a field outside it fails here first.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images"`
}

// manifest is one YAML document and what it decoded to.
type manifest struct {
	where string // file:document
	file  string
	obj   any
}

// readManifests reads every YAML document under manifestDir and decodes it
// strictly (unknown or duplicate fields are errors) into its API type.
func readManifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	err := filepath.WalkDir(manifestDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(manifestDir, path)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 1; ; i++ {
			var node yaml.Node
			if err := dec.Decode(&node); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Errorf("%s: document %d: %v", rel, i, err)
				break
			}
			where := fmt.Sprintf("%s (document %d)", rel, i)
			doc, err := yaml.Marshal(&node)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := sigsyaml.Unmarshal(doc, &head); err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			obj := newObject(head.APIVersion, head.Kind)
			if obj == nil {
				t.Errorf("%s: apiVersion %q kind %q: not a type this test knows; add it to newObject", where, head.APIVersion, head.Kind)
				continue
			}
			if err := sigsyaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s: %s %s: %v", where, head.APIVersion, head.Kind, err)
				continue
			}
			out = append(out, manifest{where: where, file: rel, obj: obj})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no manifests under %s", manifestDir)
	}
	return out
}

// A misspelled or misplaced field in a manifest fails here, not at
// kubectl apply time.
func TestManifestsDecodeStrictly(t *testing.T) {
	ms := readManifests(t)
	bad := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selectr: {app: x}\n")
	if err := sigsyaml.UnmarshalStrict(bad, &corev1.Service{}); err == nil || !strings.Contains(err.Error(), "selectr") {
		t.Errorf("a misspelled field decodes: %v; the check checks nothing", err)
	}
	// Every file is a kustomization's resource, and every resource is a
	// file.
	listed := map[string]bool{}
	files := map[string]bool{}
	for _, m := range ms {
		files[m.file] = true
		if k, ok := m.obj.(*kustomization); ok {
			for _, r := range k.Resources {
				listed[filepath.Join(filepath.Dir(m.file), r)] = true
			}
		}
	}
	for f := range files {
		if filepath.Base(f) != "kustomization.yaml" && !listed[f] {
			t.Errorf("%s is in no kustomization.yaml's resources", f)
		}
	}
	for f := range listed {
		if !files[f] {
			t.Errorf("a kustomization.yaml lists %s, which does not exist", f)
		}
	}
}

// podSpecs returns each pod template's spec with where it is, and
// whether it is a long-running server (a Deployment's).
func podSpecs(ms []manifest) (specs []*corev1.PodSpec, where []string, server []bool) {
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			specs, where, server = append(specs, &o.Spec.Template.Spec), append(where, m.where+" "+o.Name), append(server, true)
		case *batchv1.CronJob:
			specs, where, server = append(specs, &o.Spec.JobTemplate.Spec.Template.Spec), append(where, m.where+" "+o.Name), append(server, false)
		}
	}
	return specs, where, server
}

// Liveness is /livez and readiness /readyz, both on the port named
// health; every container has requests and runs as non-root on a
// read-only root file system; the grace period covers the preStop sleep.
func TestManifestsPods(t *testing.T) {
	specs, where, server := podSpecs(readManifests(t))
	if len(specs) == 0 {
		t.Fatal("no pod templates")
	}
	for i, spec := range specs {
		for _, c := range spec.Containers {
			name := where[i] + "/" + c.Name
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s: no cpu and memory requests", name)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: want runAsNonRoot, readOnlyRootFilesystem and no privilege escalation", name)
			}
			if !server[i] {
				continue
			}
			if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "health" }) {
				t.Errorf("%s: no port named health", name)
			}
			checkProbe(t, name+" livenessProbe", c.LivenessProbe, "/livez")
			checkProbe(t, name+" readinessProbe", c.ReadinessProbe, "/readyz")
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
				t.Errorf("%s: no preStop sleep (the endpoint must leave the balancers' sets before SIGTERM)", name)
				continue
			}
			if grace := spec.TerminationGracePeriodSeconds; grace == nil || *grace < c.Lifecycle.PreStop.Sleep.Seconds+15 {
				t.Errorf("%s: terminationGracePeriodSeconds %v leaves less than 15s after the %ds preStop sleep to drain and shut down", name, grace, c.Lifecycle.PreStop.Sleep.Seconds)
			}
		}
	}
}

func checkProbe(t *testing.T, name string, p *corev1.Probe, path string) {
	t.Helper()
	switch {
	case p == nil || p.HTTPGet == nil:
		t.Errorf("%s: want an httpGet probe of %s", name, path)
	case p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "health":
		t.Errorf("%s: httpGet %s on port %s, want %s on the port named health", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

// The LB reads its instances through a kubernetes:// URL that discovery
// parses, under a Role that only reads EndpointSlices.
func TestManifestsLB(t *testing.T) {
	ms := readManifests(t)
	var lb *appsv1.Deployment
	for _, m := range ms {
		if d, ok := m.obj.(*appsv1.Deployment); ok && len(d.Spec.Template.Spec.Containers) > 0 && slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "lb") {
			lb = d
		}
	}
	if lb == nil {
		t.Fatal("no Deployment runs spillway lb")
	}
	c := lb.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace" {
			env[e.Name] = lb.Namespace
		}
	}
	var urls []string
	for _, a := range c.Args {
		if u, ok := strings.CutPrefix(a, "--discovery="); ok {
			for k, v := range env {
				u = strings.ReplaceAll(u, "$("+k+")", v)
			}
			urls = append(urls, u)
		}
	}
	if len(urls) != 1 {
		t.Fatalf("spillway lb args %q: want one --discovery=URL", c.Args)
	}
	spec, err := discovery.ParseURL(urls[0])
	if err != nil || spec.Scheme != discovery.SchemeKubernetes || spec.Kubernetes.Namespace != lb.Namespace {
		t.Errorf("--discovery %q: %+v, %v; want kubernetes:// in the LB's namespace", urls[0], spec, err)
	}

	sa := lb.Spec.Template.Spec.ServiceAccountName
	if sa == "" || sa == "default" {
		t.Fatalf("spillway lb runs as service account %q, want its own", sa)
	}
	roles := map[string]*rbacv1.Role{}
	for _, m := range ms {
		if r, ok := m.obj.(*rbacv1.Role); ok {
			roles[r.Name] = r
		}
	}
	bound := 0
	for _, m := range ms {
		b, ok := m.obj.(*rbacv1.RoleBinding)
		if !ok || !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == lb.Namespace
		}) {
			continue
		}
		bound++
		r := roles[b.RoleRef.Name]
		if b.RoleRef.Kind != "Role" || r == nil {
			t.Errorf("%s: binds %s %s, want a Role of these manifests", m.where, b.RoleRef.Kind, b.RoleRef.Name)
			continue
		}
		if r.Namespace != lb.Namespace {
			t.Errorf("Role %s in namespace %q, want the LB's %q", r.Name, r.Namespace, lb.Namespace)
		}
		for _, rule := range r.Rules {
			if !slices.Equal(rule.APIGroups, []string{"discovery.k8s.io"}) || !slices.Equal(rule.Resources, []string{"endpointslices"}) || len(rule.NonResourceURLs) > 0 {
				t.Errorf("Role %s: rule %+v, want only discovery.k8s.io endpointslices", r.Name, rule)
			}
			for _, v := range rule.Verbs {
				if v != "get" && v != "list" && v != "watch" {
					t.Errorf("Role %s: verb %q, want only get, list, watch", r.Name, v)
				}
			}
		}
	}
	if bound == 0 {
		t.Errorf("no RoleBinding gives service account %s its Role", sa)
	}
}
