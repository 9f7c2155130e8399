//go:build !kubernetes

package discovery

import (
	"fmt"

	"github.com/spillway-dev/spillway/internal/lb"
)

// KubernetesBuilt reports whether this binary can follow a Kubernetes
// Service: the source and client-go are compiled in only with the build
// tag kubernetes (go build -tags kubernetes ./cmd/spillway), which adds
// about 65 MB to the binary.
const KubernetesBuilt = false

// newKubernetesSource fails: this binary was built without the tag.
func newKubernetesSource(c KubernetesConfig) (lb.Discovery, error) {
	return nil, fmt.Errorf("discovery kubernetes %s/%s: this spillway was built without Kubernetes support; build it with `go build -tags kubernetes ./cmd/spillway`", c.Namespace, c.Service)
}
