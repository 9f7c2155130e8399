package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"reflect"
	"slices"
	"strings"

	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/stack"
)

// runUp runs the whole system on this machine: a backend-sim, a fleet of
// login instances and the load balancer, with the dashboard on the admin
// address.
//
//	spillway up [--config FILE] [--listen ADDR] [--admin-listen ADDR] [--instances N] [--data-plane lb|haproxy]
//
// With --data-plane haproxy, HAProxy (found on PATH) listens on --listen
// instead of the balancer's proxy, on a configuration written into the
// run's temporary directory, and the controller drives it from the
// balancer's decisions (docs/HAPROXY.md); shedding.recovery defaults to
// "window", as with `spillway controller`.
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFileFlags("up", "configuration `file` (its login:, lb:, fleet: and up: sections)", stderr)
	bindLBListen(cl, "load balancer `address`: logins go here (default 127.0.0.1:8080)", "dashboard and admin API `address` (default 127.0.0.1:8081)")
	bindInstances(cl, "number of login instances (default 3)")
	bind(cl, cl.String, "backend-listen", "the backend-sim's `address` (default 127.0.0.1:9000)",
		func(f *config.File, v string) { f.Up.BackendListen = v })
	adminToken := cl.String("admin-token", "", "admin `token` for the dashboard's controls (default: $SPILLWAY_ADMIN_TOKEN, else generated and printed)")
	quiet := cl.Bool("quiet-instances", true, "hide the login instances' own logs (and HAProxy's)")
	dataPlane := cl.String("data-plane", stack.DataPlaneLB, "what carries the logins: lb (spillway lb's own proxy) or haproxy (HAProxy on PATH, driven by the controller; docs/HAPROXY.md)")
	logger, err := cl.parse(args, stderr)
	if err != nil {
		return err
	}
	// load reads the file with the flags applied: at start, and again on
	// SIGHUP.
	hap := *dataPlane == stack.DataPlaneHAProxy
	switch *dataPlane {
	case stack.DataPlaneLB:
	case stack.DataPlaneHAProxy:
		if _, err := exec.LookPath("haproxy"); err != nil {
			return fmt.Errorf("--data-plane haproxy: %w", stack.ErrNoHAProxy)
		}
	default:
		return fmt.Errorf("--data-plane %q: want %s or %s", *dataPlane, stack.DataPlaneLB, stack.DataPlaneHAProxy)
	}
	load := func() (*config.File, error) {
		def := config.ForUp()
		if hap {
			// As `spillway controller`: HAProxy admits a share, it
			// cannot bound the requests in flight per dependency.
			def.LB.Shedding.Recovery = lb.RecoveryWindow
			def.LB.Shedding.RecoveryWindow = controllerRecoveryWindow
		}
		f, err := cl.load(def)
		if err != nil {
			return nil, err
		}
		if err := f.Validate(); err != nil {
			return nil, err
		}
		if hap && f.LB.Shedding.Recovery != lb.RecoveryWindow {
			return nil, field.New("lb.shedding.recovery", string(f.LB.Shedding.Recovery), `must be "window" with --data-plane haproxy: HAProxy cannot bound requests in flight per dependency (docs/HAPROXY.md)`)
		}
		if f.LB.Discovery != "" {
			return nil, field.New("lb.discovery", f.LB.Discovery, "not used by spillway up, whose load balancer follows its own fleet; remove it")
		}
		return &f, nil
	}
	f, err := load()
	if err != nil {
		return err
	}
	token, generated, err := adminTokenFor(*adminToken, &f.LB)
	if err != nil {
		return err
	}
	var out io.Writer = io.Discard
	if !*quiet {
		out = stderr
	}
	s, err := stack.New(*f, stack.Options{
		Logger:         logger,
		InstanceOutput: out,
		AdminToken:     token,
		Flags:          stack.Flags{Listen: "--listen", AdminListen: "--admin-listen", BackendListen: "--backend-listen"},
		DataPlane:      *dataPlane,
	})
	if err != nil {
		return err
	}
	// SIGHUP reloads the file's lb: section into the load balancer, all
	// or nothing; the other sections shape processes already running and
	// need a restart of spillway up (login: a rolling restart would not
	// pick them up: the instances' file is written once, at start).
	// Installed before the banner, which a script may wait for and then
	// send SIGHUP at once.
	defer cl.onHangup(logger, func() {
		// The file is read inside Reload, so that a file that does not
		// load counts as a failed reload too (spillway_config_last_reload_successful).
		var nf *config.File
		if err := s.Balancer().Reload(func() (*lb.Config, error) {
			var err error
			if nf, err = load(); err != nil {
				return nil, err
			}
			c := nf.LB
			c.Instances = nil
			return &c, nil
		}); err != nil {
			return // logged and counted by Reload
		}
		var restart []string
		for name, pair := range map[string][2]any{"login": {f.Login, nf.Login}, "fleet": {f.Fleet, nf.Fleet}, "up": {f.Up, nf.Up}} {
			if !reflect.DeepEqual(pair[0], pair[1]) {
				restart = append(restart, name)
			}
		}
		if len(restart) > 0 {
			slices.Sort(restart)
			logger.Warn("SIGHUP: these sections changed but need a restart of spillway up; not applied", "sections", strings.Join(restart, ", "))
		}
	})()
	lbURL, adminURL := "http://"+s.LBAddr(), "http://"+s.AdminAddr()
	front := "the load balancer"
	if hap {
		front = "HAProxy (driven by the controller)"
	}
	fmt.Fprintf(stdout, `spillway is up: %d login instances behind %s, backend %s

  logins     %s/v1/login
  dashboard  %s/#token=%s
  admin API  %s/status   (changes need: Authorization: Bearer <token>)

Try:
  curl -s -XPOST %s/v1/login -d '{"ticket":"valid-alice"}'
`, f.Fleet.Size, front, s.BackendURL(), lbURL, adminURL, token, adminURL, lbURL)
	if generated {
		fmt.Fprintf(stdout, "\nThe admin token was generated for this run; set SPILLWAY_ADMIN_TOKEN to choose one.\n")
	}
	fmt.Fprintf(stdout, "Ctrl-C stops everything.\n\n")
	return s.Run(ctx)
}
