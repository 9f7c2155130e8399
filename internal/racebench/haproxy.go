package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

// HAProxy composed as the seed's team planned it: a backend "dep" whose
// one server is the backend API, health-checked on /healthz; a backend
// "logins" with the instances, checked on their health ports' /readyz;
// and a frontend that answers 503 dependency_unavailable itself while
// "dep" has no server up. The checks' timers (inter 400ms, fall 2, rise 2)
// are the team's.

// Timers of the HAProxy composition's checks.
const (
	haproxyInter = 400 * time.Millisecond
	haproxyFall  = 2
	haproxyRise  = 2
)

// haproxyPlan is what the HAProxy configuration needs to know.
type haproxyPlan struct {
	// Listen is the frontend's host:port.
	Listen string
	// Backend is the backend API's host:port.
	Backend string
	// Instances are the login instances.
	Instances []instance
}

// haproxyConfig renders the configuration. Its deliberate 503 carries
// X-Spillway-Reason: dependency_unavailable and Retry-After: 1, so the
// load counts it as shed and a client retries it as it would spillway's.
func haproxyConfig(p haproxyPlan) string {
	var b strings.Builder
	check := fmt.Sprintf("inter %dms fall %d rise %d", haproxyInter.Milliseconds(), haproxyFall, haproxyRise)
	fmt.Fprintf(&b, `# Written by racebench: HAProxy as the seed's team planned it.
global
    log stderr format iso local0 notice
    maxconn 4096

defaults
    mode http
    log global
    maxconn 4096
    timeout connect 1s
    timeout client 10s
    timeout server 10s

frontend fe
    bind %s
    http-request return status 503 content-type application/json string "{\"error\":\"dependency_unavailable\"}" hdr X-Spillway-Reason dependency_unavailable hdr Retry-After 1 if !{ nbsrv(dep) ge 1 }
    default_backend logins

backend dep
    option httpchk GET /healthz
    server be %s check %s

backend logins
    balance roundrobin
    option httpchk GET /readyz
`, p.Listen, p.Backend, check)
	for i, in := range p.Instances {
		fmt.Fprintf(&b, "    server login-%d %s check %s %s\n", i+1, in.Service, healthTarget(in), check)
	}
	return b.String()
}

// healthTarget is the check's destination: the health port, and the
// health host too when it is not the service's.
func healthTarget(in instance) string {
	sh, _, _ := net.SplitHostPort(in.Service)
	hh, hp, err := net.SplitHostPort(in.Health)
	if err != nil {
		return "port " + in.Health // caught by haproxy -c
	}
	if hh != sh {
		return "addr " + hh + " port " + hp
	}
	return "port " + hp
}

// checkHAProxy validates the configuration file with haproxy -c.
func checkHAProxy(ctx context.Context, bin, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-c", "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("haproxy -c -f %s: %w: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}

// haproxyVersion is the first line of haproxy -v.
func haproxyVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-v").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
