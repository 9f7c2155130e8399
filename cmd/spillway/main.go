// Command spillway is the one binary of the spillway project: each component
// is a subcommand.
//
//	spillway login        a login instance (service port + health port)
//	spillway guard        a sidecar: one dependency guarded, and a health port, for a service in any language
//	spillway backend-sim  a controllable stand-in for the backend API
//	spillway lb           the load balancer in front of login instances
//	spillway controller   spillway's decisions applied to an HAProxy in front of them
//	spillway fleet        one host's login instances, supervised (and registered in etcd)
//	spillway up           the whole system on this machine, with a dashboard
//	spillway drill        replay the 2018 incident and report the timeline
//	spillway probe        check an instance's health address against the contract
//	spillway check        validate a configuration file
//	spillway version      print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spillway-dev/spillway/internal/buildinfo"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"login", "run a login instance", runLogin},
		{"guard", "guard one dependency for a service in any language: spillway guard --listen ADDR --health-listen ADDR --upstream URL [--timeout D] [--service-ready URL]", runGuard},
		{"backend-sim", "run the controllable backend stand-in", runBackendSim},
		{"lb", "run the load balancer", runLB},
		{"controller", "drive an HAProxy with the load balancer's decisions: spillway controller --haproxy-socket PATH --instance SERVICE=HEALTH ... [--print-haproxy-config]", runController},
		{"fleet", "supervise this host's login instances: spillway fleet --instances N --backend URL [--register etcd://HOST:PORT/PREFIX]", runFleet},
		{"up", "run the whole system on this machine: backend-sim, 3 login instances, load balancer, dashboard", runUp},
		{"drill", "replay the 2018 incident against both profiles and report: spillway drill [--scenario FILE]", runDrill},
		{"probe", "check an instance's health address against the instance contract: spillway probe HOST:PORT", runProbe},
		{"check", "validate a configuration file", runCheck},
		{"version", "print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			// The flag package already printed the problem.
			return 2
		default:
			fmt.Fprintf(stderr, "spillway %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "spillway: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// errUsage reports a command-line error that has already been printed.
var errUsage = errors.New("usage error")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: spillway <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "spillway <command> -h" for a command's flags.`)
}

// runVersion prints the module version and VCS revision embedded in the
// binary (see internal/buildinfo).
func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlagSet("version", stderr), args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "spillway %s\n", buildinfo.Get())
	return nil
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("spillway "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and maps a parse failure to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}
