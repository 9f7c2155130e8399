package fleet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"time"
)

// proc is one instance process. Fields without a comment are set before
// the process starts and never change; the rest are guarded by Fleet.mu
// unless noted.
type proc struct {
	id        string
	slot      *slot
	cmd       *exec.Cmd
	pid       int
	service   string
	health    string
	startedAt time.Time
	restarts  int // the slot's restarts before this process
	out       *output

	state      State
	reason     string // why it is stopping or was replaced
	checks     *Checks
	last       CheckResult
	ready      bool
	readyCh    chan struct{} // closed when ready first becomes true
	stopProbes context.CancelFunc

	// exited is closed by the waiter once cmd.Wait has returned; exitErr
	// and exitedAt are written before and may be read after.
	exited   chan struct{}
	exitErr  error
	exitedAt time.Time
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// addr returns the address a check on port targets.
func (p *proc) addr(port string) string {
	if port == PortService {
		return p.service
	}
	return p.health
}

// output prefixes each line an instance writes with its ID and copies it to
// dst, and keeps the last tailSize bytes for the diagnosis of an exit. exec
// calls Write from one goroutine at a time (Stdout and Stderr are the same
// *output); the lock also covers tail reads.
type output struct {
	id    string
	dst   io.Writer   // nil: discard
	dstMu *sync.Mutex // shared by all instances, so lines do not interleave

	mu      sync.Mutex
	partial []byte
	tail    []byte
}

const (
	tailSize    = 2 << 10
	maxLineSize = 8 << 10
)

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tail = append(o.tail, b...)
	if len(o.tail) > tailSize {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-tailSize:]...)
	}
	if o.dst == nil {
		return len(b), nil
	}
	o.partial = append(o.partial, b...)
	rest := o.partial
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		o.emitLocked(rest[:i])
		rest = rest[i+1:]
	}
	if len(rest) > maxLineSize {
		o.emitLocked(rest)
		rest = nil
	}
	o.partial = append(o.partial[:0], rest...)
	return len(b), nil
}

// flush writes an unterminated last line.
func (o *output) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.partial) > 0 && o.dst != nil {
		o.emitLocked(o.partial)
	}
	o.partial = nil
}

func (o *output) emitLocked(line []byte) {
	o.dstMu.Lock()
	defer o.dstMu.Unlock()
	fmt.Fprintf(o.dst, "%s | %s\n", o.id, line) // an output error must not break the instance's pipe
}

// lastLine returns the last non-empty line the instance wrote.
func (o *output) lastLine() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := bytes.TrimRight(o.tail, "\r\n")
	if i := bytes.LastIndexByte(t, '\n'); i >= 0 {
		t = t[i+1:]
	}
	return string(t)
}

func (o *output) addrInUse() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Contains(o.tail, []byte("address already in use"))
}

// prober checks instances over HTTP. It keeps no connections: every check
// dials afresh, so a check never rides on a connection to a process that
// has since died, and nothing lingers after the fleet stops.
type prober struct {
	client  *http.Client
	timeout time.Duration
}

func newProber(timeout time.Duration) *prober {
	tr := &http.Transport{
		Proxy:                  nil, // checks go to the instance, never through a proxy
		DialContext:            (&net.Dialer{Timeout: timeout}).DialContext,
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConns:           1,
		IdleConnTimeout:        time.Second,
		TLSHandshakeTimeout:    timeout,
		ExpectContinueTimeout:  timeout,
	}
	return &prober{
		client: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		timeout: timeout,
	}
}

// check makes one GET http://addr+path and reports whether it answered 2xx
// within the timeout.
func (p *prober) check(ctx context.Context, addr, path string, now func() time.Time) CheckResult {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	r := CheckResult{Target: addr + path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		r.Time, r.Error = now(), err.Error()
		return r
	}
	resp, err := p.client.Do(req)
	r.Time = now()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	r.Status = resp.StatusCode
	r.OK = resp.StatusCode >= 200 && resp.StatusCode < 300
	if !r.OK {
		r.Error = resp.Status
	}
	return r
}

func (p *prober) close() { p.client.CloseIdleConnections() }
