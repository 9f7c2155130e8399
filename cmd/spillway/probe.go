package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// errNotConforming: spillway probe found the instance in breach of the
// contract (exit 1); the lines printed say how.
var errNotConforming = errors.New("the instance does not conform to the instance contract (docs/CONTRACT.md)")

// runProbe checks an instance's health address against the instance
// contract (docs/CONTRACT.md) from outside, as spillway lb would read
// it: spillway probe [--timeout D] [--live-path P] [--ready-path P]
// [--report-path P] HOST:PORT.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "`time` each endpoint must answer within (the long poll gets this plus its wait)")
	livePath := fs.String("live-path", "/livez", "liveness `path`")
	readyPath := fs.String("ready-path", "/readyz", "readiness `path` (lb.health_check.ready_path)")
	reportPath := fs.String("report-path", "/health", "report `path` (lb.health_check.report_path)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: spillway probe [flags] HOST:PORT\n\nChecks an instance's health address against the instance contract (docs/CONTRACT.md).\nExit 0: it conforms (warnings allowed); 1: it does not.")
		fs.PrintDefaults()
	}
	// Flags may come before or after the address.
	var addr string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		if addr != "" {
			fmt.Fprintf(stderr, "spillway probe: unexpected argument %q\n", fs.Arg(0))
			return errUsage
		}
		addr, rest = fs.Arg(0), fs.Args()[1:]
	}
	if addr == "" {
		fmt.Fprintln(stderr, "spillway probe: the instance's health address HOST:PORT is required")
		return errUsage
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		fmt.Fprintf(stderr, "spillway probe: %q: not a HOST:PORT\n", addr)
		return errUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "spillway probe: --timeout %v: must be positive\n", *timeout)
		return errUsage
	}
	for _, p := range []*string{livePath, readyPath, reportPath} {
		if !strings.HasPrefix(*p, "/") {
			fmt.Fprintf(stderr, "spillway probe: path %q: must start with /\n", *p)
			return errUsage
		}
	}
	p := &prober{base: "http://" + addr, timeout: *timeout, out: stdout, client: &http.Client{
		Transport:     &http.Transport{Proxy: nil, DisableCompression: true, MaxResponseHeaderBytes: 16 << 10},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	defer p.client.CloseIdleConnections()
	p.run(ctx, *livePath, *readyPath, *reportPath)
	fmt.Fprintf(stdout, "%s: %d ok, %d warnings, %d failed", addr, p.oks, p.warns, p.fails)
	if p.fails > 0 {
		fmt.Fprintln(stdout, ": does not conform")
		return errNotConforming
	}
	fmt.Fprintln(stdout, ": conforms")
	return nil
}

type prober struct {
	base              string
	timeout           time.Duration
	client            *http.Client
	out               io.Writer
	oks, warns, fails int
}

func (p *prober) ok(format string, args ...any) {
	p.oks++
	fmt.Fprintf(p.out, "ok   "+format+"\n", args...)
}

func (p *prober) warn(format string, args ...any) {
	p.warns++
	fmt.Fprintf(p.out, "warn "+format+"\n", args...)
}

func (p *prober) fail(format string, args ...any) {
	p.fails++
	fmt.Fprintf(p.out, "FAIL "+format+"\n", args...)
}

// answer is one GET's outcome.
type answer struct {
	resp *http.Response
	body []byte
	took time.Duration
	err  error
}

func (p *prober) get(ctx context.Context, target string, accept string, timeout time.Duration, limit int64) answer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+target, nil)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("User-Agent", "spillway-probe")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		return answer{err: plainNetError(err, timeout), took: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return answer{resp: resp, err: plainNetError(err, timeout), took: time.Since(start)}
	}
	return answer{resp: resp, body: body, took: time.Since(start)}
}

// plainNetError says what a transport error means.
func plainNetError(err error, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer within %v", timeout)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("cancelled")
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Errorf("cannot connect: %w", oe.Err)
	}
	return err
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func (p *prober) run(ctx context.Context, livePath, readyPath, reportPath string) {
	// /livez: 200.
	a := p.get(ctx, livePath, "", p.timeout, 4<<10)
	switch {
	case a.err != nil:
		p.fail("%s: %v", livePath, a.err)
	case a.resp.StatusCode != http.StatusOK:
		p.fail("%s: %d %s because a live process must answer 200 (the balancer and orchestrators restart what fails it)", livePath, a.resp.StatusCode, snippet(a.body))
	default:
		p.ok("%s 200", livePath)
	}

	// /readyz: 200 or 503.
	readyStatus := 0
	a = p.get(ctx, readyPath, "", p.timeout, 4<<10)
	switch {
	case a.err != nil:
		p.fail("%s: %v", readyPath, a.err)
	case a.resp.StatusCode == http.StatusOK:
		readyStatus = 200
		p.ok("%s 200 (ready)", readyPath)
	case a.resp.StatusCode == http.StatusServiceUnavailable:
		readyStatus = 503
		p.ok("%s 503 (not ready: %s)", readyPath, snippet(a.body))
	default:
		p.fail("%s: %d because readiness must answer 200 (ready) or 503 (not ready)", readyPath, a.resp.StatusCode)
	}

	// /health: in time, within the size limit, a report we can use.
	a = p.get(ctx, reportPath, "application/json, application/health+json;q=0.9, application/vnd.spring-boot.actuator.v3+json;q=0.8, */*;q=0.1", p.timeout, health.MaxReportBytes)
	if a.err != nil {
		p.fail("%s: %v", reportPath, a.err)
		return
	}
	if a.resp.StatusCode != http.StatusOK && a.resp.StatusCode != http.StatusServiceUnavailable {
		p.fail("%s: %d because the report must be answered with 200 (503 is read too: Spring Boot and IETF services use it)", reportPath, a.resp.StatusCode)
		return
	}
	ctype := a.resp.Header.Get("Content-Type")
	rep, format, err := health.DecodeReport(ctype, a.body)
	if err != nil {
		var re *health.ReportError
		if errors.As(err, &re) {
			p.fail("%s: unusable (%s) because %s", reportPath, re.Reason, reportWhy(re))
		} else {
			p.fail("%s: %v", reportPath, err)
		}
		return
	}
	p.ok("%s %d, %d bytes in %v, %s", reportPath, a.resp.StatusCode, len(a.body), a.took.Round(time.Millisecond), describeFormat(format))
	switch format {
	case health.FormatSpillway:
		if a.resp.StatusCode != http.StatusOK {
			p.warn("%s: answered %d; spillway's report is answered 200 whatever it says (the balancer reads its content, not its status)", reportPath, a.resp.StatusCode)
		}
		if mt := strings.TrimSpace(strings.SplitN(ctype, ";", 2)[0]); mt != health.ContentTypeJSON {
			p.warn("%s: Content-Type %q, want %s", reportPath, ctype, health.ContentTypeJSON)
		}
	}
	if len(rep.Dependencies) == 0 {
		p.warn("%s: no dependencies listed, so the balancer cannot shed at the edge when a dependency is down", reportPath)
	} else {
		names := make([]string, 0, len(rep.Dependencies))
		for n, d := range rep.Dependencies {
			names = append(names, n+" "+d.State)
		}
		sort.Strings(names)
		p.ok("%s: dependencies: %s", reportPath, strings.Join(names, ", "))
	}
	if rep.Limit == 0 {
		p.warn("%s: no limit, so the balancer does not bound what it sends this instance", reportPath)
	} else {
		p.ok("%s: limit %d, in flight %d", reportPath, rep.Limit, rep.InFlight)
	}
	switch {
	case readyStatus == 200 && !rep.Ready:
		p.warn("%s: says not ready while %s answers 200, so its report casts no vote", reportPath, readyPath)
	case readyStatus == 503 && rep.Ready:
		p.warn("%s: says ready while %s answers 503", reportPath, readyPath)
	}
	if rep.Version == "" {
		p.warn("%s: no version, so no long poll: the balancer polls every interval and learns of a change up to an interval late", reportPath)
		return
	}
	// The long poll: with the current version it must answer by the
	// end of the wait (at once if the version changed).
	const wait = 500 * time.Millisecond
	q := url.Values{"version": {rep.Version}, "wait": {wait.String()}}.Encode()
	a = p.get(ctx, reportPath+"?"+q, "application/json", p.timeout+wait, health.MaxReportBytes)
	switch {
	case a.err != nil:
		p.fail("%s long poll (?%s): %v because an instance with a version must answer by the end of the wait", reportPath, q, a.err)
	case a.resp.StatusCode != http.StatusOK:
		p.fail("%s long poll (?%s): %d because it must answer 200 with the report", reportPath, q, a.resp.StatusCode)
	default:
		if _, _, err := health.DecodeReport(a.resp.Header.Get("Content-Type"), a.body); err != nil {
			p.fail("%s long poll: %v", reportPath, err)
		} else {
			p.ok("%s long poll answered in %v (wait %v)", reportPath, a.took.Round(time.Millisecond), wait)
		}
	}
}

func describeFormat(f health.Format) string {
	switch f {
	case health.FormatIETF:
		return "an IETF health+json document"
	case health.FormatSpring:
		return "a Spring Boot Actuator document"
	default:
		return "a spillway report"
	}
}

// reportWhy says an unusable reason in plain words.
func reportWhy(re *health.ReportError) string {
	switch re.Reason {
	case health.UnusableTooLarge:
		return fmt.Sprintf("it is larger than %d bytes", health.MaxReportBytes)
	case health.UnusableNotJSON:
		return re.Detail + " (is the report path pointing at /livez or a web page?)"
	case health.UnusableWrongShape:
		return "it is " + re.Detail
	default:
		if re.Err != nil {
			return re.Detail + ": " + re.Err.Error()
		}
		return re.Detail
	}
}
