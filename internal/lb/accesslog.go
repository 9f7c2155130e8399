package lb

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/field"
)

// AccessLogConfig is the access log: one JSON line per request the proxy
// answered or passed on (docs/LB.md, "Access log"). Off by default.
type AccessLogConfig struct {
	// Path is where the lines go: "" turns the access log off (the
	// default), "-" is standard error, anything else a file, created
	// (mode 0644) or appended to. A file is reopened on SIGHUP, so
	// logrotate may move it away and signal (no copytruncate needed).
	// Switching the log on or off needs a restart; a reload may change
	// the file.
	Path string `yaml:"path"`
	// BufferSize bounds, in bytes, the lines waiting to be written: a
	// line that would not fit is dropped and counted
	// (spillway_lb_access_log_dropped_total), so a slow disk never
	// holds a request up. Default 1048576 (1 MiB); at least 4096. Needs
	// a restart.
	BufferSize int `yaml:"buffer_size"`
	// FlushInterval is how often the waiting lines are written; they are
	// also written as soon as half the buffer is used, and at stop.
	// Default 1s; from 10ms to 1m. Needs a restart.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// DefaultAccessLogConfig is AccessLogConfig's defaults: off.
func DefaultAccessLogConfig() AccessLogConfig {
	return AccessLogConfig{BufferSize: 1 << 20, FlushInterval: time.Second}
}

// Validate reports every invalid field of the access_log section.
func (c *AccessLogConfig) Validate() error {
	var errs []error
	if c.BufferSize < 4096 {
		errs = append(errs, field.New("buffer_size", c.BufferSize, "must be at least 4096"))
	}
	if c.FlushInterval < 10*time.Millisecond || c.FlushInterval > time.Minute {
		errs = append(errs, field.New("flush_interval", c.FlushInterval, "must be from 10ms to 1m"))
	}
	return errors.Join(errs...)
}

// restartOnly is the part of the section that a reload cannot change.
func (c AccessLogConfig) restartOnly() AccessLogConfig {
	c.Path = strconv.FormatBool(c.Path != "") // on or off; the file may change
	return c
}

// maxLoggedPath bounds the path written in a line (the rest is cut and
// "..." appended), so that one line stays small whatever the client sends.
const maxLoggedPath = 1024

// accessLog writes the access log. The request path formats its line and
// copies it into buf under mu, a short critical section without I/O; the
// goroutine of run writes buf out every flush interval, or sooner once it
// is half full, swapping it with a spare so that requests never wait on
// the file. Memory is bounded by two buffers of the configured size; a
// line that does not fit is dropped and counted rather than waited for.
// (A bounded channel of lines would need an allocation per line and a
// bound in lines, not bytes; a mutex around a bufio.Writer would make the
// request that fills it write to the file.) Safe for concurrent use.
type accessLog struct {
	max   int
	every time.Duration

	mu    sync.Mutex
	buf   []byte // lines waiting; len <= max
	spare []byte // the writer's, between swaps

	kick    chan struct{} // buf passed half of max
	dropped atomic.Uint64

	// fmu guards the output: the writer's flush and reopen.
	fmu  sync.Mutex
	out  io.Writer
	file *os.File // nil for stderr
	path string
}

// newAccessLog opens the access log c describes, or returns nil when it
// is off.
func newAccessLog(c AccessLogConfig, reg prometheus.Registerer) (*accessLog, error) {
	if c.Path == "" {
		return nil, nil
	}
	a := &accessLog{max: c.BufferSize, every: c.FlushInterval, kick: make(chan struct{}, 1),
		buf: make([]byte, 0, c.BufferSize), spare: make([]byte, 0, c.BufferSize)}
	out, f, err := openAccessLog(c.Path)
	if err != nil {
		return nil, err
	}
	a.out, a.file, a.path = out, f, c.Path
	err = reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "spillway_lb_access_log_dropped_total",
		Help: "Access log lines dropped because the buffer of lines waiting to be written was full.",
	}, func() float64 { return float64(a.dropped.Load()) }))
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("lb: register access log metrics: %w", err)
	}
	return a, nil
}

func openAccessLog(path string) (io.Writer, *os.File, error) {
	if path == "-" {
		return os.Stderr, nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("access_log.path: %w", err)
	}
	return f, f, nil
}

// ReopenAccessLog opens the access log's file again, for logrotate's
// "move it away, then signal": lines still waiting go to the old file,
// the next ones to the new. Reload does it too. Without an access log,
// or on stderr, it does nothing.
func (b *Balancer) ReopenAccessLog() error {
	a := b.access
	if a == nil {
		return nil
	}
	a.fmu.Lock()
	path := a.path
	a.fmu.Unlock()
	out, f, err := openAccessLog(path)
	if err != nil {
		return err
	}
	a.swap(out, f, path)
	return nil
}

// swap makes out the output, after a last flush to the old one.
func (a *accessLog) swap(out io.Writer, f *os.File, path string) {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	a.flushLocked()
	if a.file != nil {
		a.file.Close()
	}
	a.out, a.file, a.path = out, f, path
}

// add queues one line, or drops and counts it when it does not fit.
func (a *accessLog) add(line []byte) {
	a.mu.Lock()
	if len(a.buf)+len(line) > a.max {
		a.mu.Unlock()
		a.dropped.Add(1)
		return
	}
	a.buf = append(a.buf, line...)
	half := len(a.buf) > a.max/2
	a.mu.Unlock()
	if half {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// run writes the waiting lines every flush interval, and when add says
// the buffer is half full, until stop is closed; close writes the rest.
func (a *accessLog) run(stop <-chan struct{}) {
	t := time.NewTicker(a.every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-a.kick:
		}
		a.flush()
	}
}

func (a *accessLog) flush() {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	a.flushLocked()
}

// flushLocked swaps the buffers and writes the lines out; a write error
// loses those lines (counted as dropped) and is not retried.
func (a *accessLog) flushLocked() {
	a.mu.Lock()
	lines := a.buf
	a.buf = a.spare[:0]
	a.mu.Unlock()
	if len(lines) > 0 {
		if _, err := a.out.Write(lines); err != nil {
			a.dropped.Add(uint64(countLines(lines)))
		}
	}
	a.spare = lines[:0] // the next swap's buffer; only the writer swaps
}

// close writes what waits and closes the file.
func (a *accessLog) close() {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	a.flushLocked()
	if a.file != nil {
		a.file.Close()
		a.file = nil
		a.out = io.Discard
	}
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

// accessWriter is the client's ResponseWriter while the access log is on:
// it notes the status and the body bytes written, and the balancer's
// call notes the instance and its attempts (call.finish).
type accessWriter struct {
	http.ResponseWriter
	start    time.Time
	status   int
	bytes    int64
	reason   []string // health.ReasonHeader when the status was written
	instance string   // the last attempt's; "" if none
	attempts int
	answered bool // an instance answered (call.status != 0)
	upgraded int  // the instance's 101, whose header ReverseProxy writes on the hijacked connection
}

func (w *accessWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		w.reason = w.Header()[health.ReasonHeader]
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *accessWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines, the hijack of an upgrade).
func (w *accessWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// log writes w's line for r, once the exchange has ended (normally or
// by a panic: an aborted answer still gets its line).
func (a *accessLog) log(w *accessWriter, r *http.Request, id string) {
	status, reason := w.status, ""
	if status == 0 && w.upgraded != 0 {
		status = w.upgraded
	}
	if !w.answered && len(w.reason) > 0 {
		reason = w.reason[0] // the balancer answered itself
	}
	var scratch [512]byte
	b := appendAccessLine(scratch[:0], w.start, time.Since(w.start), id, r.Method, r.URL.Path, status, reason, w.instance, w.attempts, w.bytes, r.RemoteAddr)
	a.add(b)
}

// appendAccessLine appends one access log line, a JSON object with its
// keys always in this order, and a newline.
func appendAccessLine(b []byte, start time.Time, d time.Duration, id, method, path string, status int, reason, instance string, attempts int, bytes int64, client string) []byte {
	b = append(b, `{"time":"`...)
	b = start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","request_id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, method)
	b = append(b, `,"path":`...)
	if len(path) > maxLoggedPath {
		b = appendJSONString(b, path[:maxLoggedPath]+"...")
	} else {
		b = appendJSONString(b, path)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, reason)
	b = append(b, `,"instance":`...)
	b = appendJSONString(b, instance)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(attempts), 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendFloat(b, d.Seconds(), 'f', 6, 64)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, bytes, 10)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, client)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
