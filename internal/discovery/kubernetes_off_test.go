//go:build !kubernetes

package discovery

import (
	"strings"
	"testing"
)

// checkKubernetesSpec: without the kubernetes tag there is no source to
// build, only the error that says how to get one.
func checkKubernetesSpec(t *testing.T, raw string, c KubernetesConfig) {
	if _, err := New(Spec{Scheme: SchemeKubernetes, Kubernetes: c}, nil); err == nil {
		t.Fatalf("%q: built without the kubernetes tag, yet New succeeded", raw)
	}
}

// testNewKubernetes: without the kubernetes tag, New says how to build a
// binary that has the source.
func testNewKubernetes(t *testing.T) {
	s, err := ParseURL("kubernetes://default/login")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(s, nil); err == nil || !strings.Contains(err.Error(), "-tags kubernetes") {
		t.Errorf("New(kubernetes) without the tag = %v, want an error naming the build tag", err)
	}
}
