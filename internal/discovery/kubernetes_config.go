package discovery

import (
	"log/slog"
	"regexp"

	"github.com/spillway-dev/spillway/internal/field"
)

// The EndpointSlice port names Kubernetes reads.
const (
	// KubernetesServicePort names the port requests are proxied to.
	KubernetesServicePort = "http"
	// KubernetesHealthPort names the port health is checked on.
	KubernetesHealthPort = "health"
)

// KubernetesConfig configures a Kubernetes.
type KubernetesConfig struct {
	// Namespace is the Service's namespace, a DNS-1123 label.
	Namespace string
	// Service is the Service's name, a DNS-1035 label (as the API
	// requires of Service names).
	Service string
	// Kubeconfig, when set, is the absolute path of a kubeconfig file
	// whose current context is used (out of the cluster); "" uses the
	// pod's service account (rest.InClusterConfig). Only New reads it:
	// NewKubernetes is given its client.
	Kubeconfig string
	// Log receives the source's events. Nil: discarded.
	Log *slog.Logger
}

// dnsLabel is a DNS-1123 label (a namespace's name); serviceName a
// DNS-1035 label, one that starts with a letter (a Service's name). Both
// are at most 63 characters.
var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	serviceName = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
)

// checkNamespace checks a namespace name: a DNS-1123 label.
func checkNamespace(path, ns string) error {
	return checkObjectName(path, ns, dnsLabel, "not a namespace name: at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit")
}

// checkServiceName checks a Service's name: a DNS-1035 label (a DNS-1123
// label that starts with a letter), as the API requires.
func checkServiceName(path, name string) error {
	return checkObjectName(path, name, serviceName, "not a Service name: at most 63 lower-case letters, digits or '-', starting with a letter and ending with a letter or digit")
}

// checkObjectName checks a name of kubernetes://NAMESPACE/SERVICE: present, at
// most 63 characters and matching label, else rule is what is wrong.
func checkObjectName(path, name string, label *regexp.Regexp, rule string) error {
	if name == "" {
		return field.New(path, name, "required: kubernetes://NAMESPACE/SERVICE")
	}
	if len(name) > 63 || !label.MatchString(name) {
		return field.New(path, name, rule)
	}
	return nil
}
