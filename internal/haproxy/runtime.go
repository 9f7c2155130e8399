package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/lb"
)

// DefaultTimeout bounds a command whose context has no deadline, when
// Runtime.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// DefaultMaxAnswer bounds the size of an answer, when Runtime.MaxAnswer
// is zero: a map of a million short entries fits.
const DefaultMaxAnswer = 64 << 20

// Errors a caller can branch on, with errors.Is. A *CommandError wraps
// one of the first four.
var (
	// ErrNotFound: HAProxy does not know the backend, server, map or map
	// key named ("No such server.", "Can't find backend.", "Unknown map
	// identifier...", "entry not found.", ...).
	ErrNotFound = errors.New("not found")
	// ErrUnknownCommand: "Unknown command...", from an HAProxy that lacks
	// the command (or a socket level that hides it).
	ErrUnknownCommand = errors.New("unknown command")
	// ErrPermissionDenied: "Permission denied", from a socket whose level
	// (user, operator) does not allow the command.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrRejected: a command that answers nothing on success answered
	// text, e.g. "Absolute weight can only be between 0 and 256
	// inclusive.".
	ErrRejected = errors.New("rejected")
	// ErrBadArgument: an argument that the CLI cannot carry as one word
	// (empty, or holding a space, ';', '\', a control character, or '/'
	// in a backend or server name), or a number out of range. Nothing is
	// sent.
	ErrBadArgument = errors.New("bad argument")
)

// CommandError is HAProxy's refusal of a command: the command as sent
// and HAProxy's answer. It unwraps to ErrNotFound, ErrUnknownCommand,
// ErrPermissionDenied or ErrRejected.
type CommandError struct {
	Command string
	Answer  string // HAProxy's answer, trailing newlines trimmed
	Err     error
}

func (e *CommandError) Error() string {
	answer, _, _ := strings.Cut(e.Answer, "\n") // "Unknown command" lists the whole help after
	return fmt.Sprintf("haproxy command %q: %v: HAProxy answered %q", e.Command, e.Err, answer)
}

func (e *CommandError) Unwrap() error { return e.Err }

// Runtime is a client of one HAProxy's Runtime API. Its zero value is not
// usable: call NewRuntime. Safe for concurrent use; set its fields before
// the first call.
type Runtime struct {
	// Timeout bounds each command whose context has no deadline (dial,
	// write, read to EOF). Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxAnswer bounds an answer's size in bytes; a longer one is an
	// error. Zero means DefaultMaxAnswer.
	MaxAnswer int64

	network, address string
	slots            chan struct{} // MaxConcurrent commands at once
}

// MaxConcurrent is how many commands one Runtime has in flight at once;
// more wait their turn (within their context). HAProxy's stats socket
// takes "stats maxconn" connections (10 by default), shared with every
// other client of it, and a unix socket whose backlog is full refuses a
// connect at once (EAGAIN) instead of queueing it.
const MaxConcurrent = 4

// NewRuntime returns a client of the stats socket at addr:
// "unix:///run/haproxy/admin.sock", "tcp://127.0.0.1:9999", or a plain
// path (a unix socket). It does not connect.
func NewRuntime(addr string) (*Runtime, error) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		path := strings.TrimPrefix(addr, "unix://")
		if path == "" {
			return nil, fmt.Errorf("haproxy runtime address %q: no socket path", addr)
		}
		return &Runtime{network: "unix", address: path, slots: make(chan struct{}, MaxConcurrent)}, nil
	case strings.HasPrefix(addr, "tcp://"):
		hp := strings.TrimPrefix(addr, "tcp://")
		if _, port, err := net.SplitHostPort(hp); err != nil || port == "" {
			return nil, fmt.Errorf("haproxy runtime address %q: not tcp://host:port", addr)
		}
		return &Runtime{network: "tcp", address: hp, slots: make(chan struct{}, MaxConcurrent)}, nil
	case strings.Contains(addr, "://"):
		return nil, fmt.Errorf("haproxy runtime address %q: scheme is neither unix:// nor tcp://", addr)
	case addr == "":
		return nil, fmt.Errorf("haproxy runtime address is empty")
	default:
		return &Runtime{network: "unix", address: addr, slots: make(chan struct{}, MaxConcurrent)}, nil
	}
}

// Addr is the socket's address in the form NewRuntime takes.
func (r *Runtime) Addr() string { return r.network + "://" + r.address }

// Exec sends one command and returns HAProxy's answer, trailing newlines
// trimmed. An answer whose first line is one of HAProxy's documented
// error texts is returned as a *CommandError; any other text is the
// caller's to judge. Exec is the escape hatch for commands this package
// does not type: command goes to HAProxy as is, so it must not carry
// outside input (use the typed methods, which check their arguments).
func (r *Runtime) Exec(ctx context.Context, command string) (string, error) {
	answer, err := r.roundTrip(ctx, command)
	if err != nil {
		return "", err
	}
	if sentinel := classify(answer); sentinel != nil {
		return "", &CommandError{Command: command, Answer: answer, Err: sentinel}
	}
	return answer, nil
}

// execQuiet runs a command that answers nothing on success: any text is
// an error.
func (r *Runtime) execQuiet(ctx context.Context, command string) error {
	answer, err := r.Exec(ctx, command)
	if err != nil {
		return err
	}
	if answer != "" {
		return &CommandError{Command: command, Answer: answer, Err: ErrRejected}
	}
	return nil
}

// roundTrip is one connection: dial, write the command, read to EOF.
func (r *Runtime) roundTrip(ctx context.Context, command string) (string, error) {
	if strings.ContainsAny(command, "\n\r") {
		return "", fmt.Errorf("haproxy command %q: %w: a newline would start another command", command, ErrBadArgument)
	}
	if _, ok := ctx.Deadline(); !ok {
		timeout := r.Timeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	fail := func(err error) (string, error) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's deadline is the context's, or the one
			// its cancel set: the context is done, or about to be.
			<-ctx.Done()
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return "", fmt.Errorf("haproxy command %q on %s: %w", command, r.Addr(), err)
	}
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return fail(fmt.Errorf("waiting for a turn: %w", ctx.Err()))
	}
	conn, err := dial(ctx, r.network, r.address)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return fail(err)
	}
	// A cancel before the deadline unblocks the read too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		return fail(fmt.Errorf("write: %w", err))
	}
	limit := r.MaxAnswer
	if limit <= 0 {
		limit = DefaultMaxAnswer
	}
	b, err := io.ReadAll(io.LimitReader(conn, limit+1))
	if err != nil {
		return fail(fmt.Errorf("read: %w", err))
	}
	if int64(len(b)) > limit {
		return fail(fmt.Errorf("answer longer than %d bytes", limit))
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// dial connects, and tries again while a unix socket's backlog is full
// (EAGAIN: HAProxy is at its stats maxconn): nothing was sent, so
// trying again is safe. It gives up with the context.
func dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	wait := time.Millisecond
	for {
		conn, err := d.DialContext(ctx, network, address)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return conn, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Error texts of HAProxy 2.6's CLI, matched as prefixes of an answer's
// first line.
var (
	notFoundTexts = []string{
		"No such server.",
		"No such backend.",
		"Can't find backend.",
		"No such frontend.",
		"Unknown map identifier",
		"Unknown ACL identifier",
		"entry not found.",
		"Key not found.",
	}
	unknownCommandTexts   = []string{"Unknown command"}
	permissionDeniedTexts = []string{"Permission denied"}
)

// classify maps an answer's first line to a sentinel error, or nil.
func classify(answer string) error {
	first, _, _ := strings.Cut(answer, "\n")
	first = strings.TrimSpace(first)
	for _, c := range []struct {
		texts []string
		err   error
	}{
		{notFoundTexts, ErrNotFound},
		{unknownCommandTexts, ErrUnknownCommand},
		{permissionDeniedTexts, ErrPermissionDenied},
	} {
		for _, t := range c.texts {
			if strings.HasPrefix(first, t) {
				return c.err
			}
		}
	}
	return nil
}

// checkWord checks that s reaches HAProxy's CLI as one argument of one
// command; names (backends, servers) may not hold '/' either.
func checkWord(what, s string, name bool) error {
	if s == "" {
		return fmt.Errorf("%s is empty: %w", what, ErrBadArgument)
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f || c == ';' || c == '\\' || (name && c == '/') {
			return fmt.Errorf("%s %q: %w: holds %q", what, s, ErrBadArgument, c)
		}
	}
	return nil
}

func checkServer(backend, server string) error {
	if err := checkWord("backend", backend, true); err != nil {
		return err
	}
	return checkWord("server", server, true)
}

// State is a server's administrative state as "set server B/S state"
// takes it.
type State string

// The states SetServerState sets.
const (
	// StateReady clears maintenance and drain: the server takes traffic
	// again if its checks pass.
	StateReady State = "ready"
	// StateDrain takes no new connections except persistent ones; the
	// server's existing connections finish.
	StateDrain State = "drain"
	// StateMaint takes no traffic and stops the server's checks.
	StateMaint State = "maint"
)

// SetServerState sets a server's administrative state: "set server
// BACKEND/SERVER state ready|drain|maint".
func (r *Runtime) SetServerState(ctx context.Context, backend, server string, s State) error {
	if err := checkServer(backend, server); err != nil {
		return err
	}
	switch s {
	case StateReady, StateDrain, StateMaint:
	default:
		return fmt.Errorf("server state %q: %w: want ready, drain or maint", s, ErrBadArgument)
	}
	return r.execQuiet(ctx, fmt.Sprintf("set server %s/%s state %s", backend, server, s))
}

// MaxWeight is the largest weight HAProxy takes.
const MaxWeight = 256

// SetWeight sets a server's user weight, 0 to MaxWeight: "set weight
// BACKEND/SERVER W". Weight 0 takes the server out of balancing without
// marking it down.
func (r *Runtime) SetWeight(ctx context.Context, backend, server string, w int) error {
	if err := checkServer(backend, server); err != nil {
		return err
	}
	if w < 0 || w > MaxWeight {
		return fmt.Errorf("weight %d for %s/%s: %w: want 0 to %d", w, backend, server, ErrBadArgument, MaxWeight)
	}
	return r.execQuiet(ctx, fmt.Sprintf("set weight %s/%s %d", backend, server, w))
}

// SetMaxconn sets a server's maxconn, the connections HAProxy sends it at
// once (the rest wait in the backend's queue): "set maxconn server
// BACKEND/SERVER N". Zero means no limit.
func (r *Runtime) SetMaxconn(ctx context.Context, backend, server string, n int) error {
	if err := checkServer(backend, server); err != nil {
		return err
	}
	if n < 0 || n > 1<<30 {
		return fmt.Errorf("maxconn %d for %s/%s: %w: want 0 (no limit) to %d", n, backend, server, ErrBadArgument, 1<<30)
	}
	return r.execQuiet(ctx, fmt.Sprintf("set maxconn server %s/%s %d", backend, server, n))
}

// ServersState returns "show servers state [BACKEND]": every server of
// the backend, or of all backends when backend is "".
func (r *Runtime) ServersState(ctx context.Context, backend string) ([]Server, error) {
	command := "show servers state"
	if backend != "" {
		if err := checkWord("backend", backend, true); err != nil {
			return nil, err
		}
		command += " " + backend
	}
	return query(ctx, r, command, ParseServersState)
}

// ShowMap returns the entries of a map, named by its file as the
// configuration names it or by "#ID": "show map MAP". Entries come in
// HAProxy's order; a key added twice appears twice.
func (r *Runtime) ShowMap(ctx context.Context, name string) ([]MapEntry, error) {
	if err := checkWord("map", name, false); err != nil {
		return nil, err
	}
	return query(ctx, r, "show map "+name, ParseMap)
}

// SetMap makes key map to value: "set map MAP KEY VALUE", and when HAProxy
// has no such key ("entry not found."), "add map MAP KEY VALUE".
//
// Set first, add on miss, rather than "del map" then "add map": a lookup
// between a del and its add would find no entry, and for an edge-shedding
// map that means a request let through (or shed) that neither the old
// nor the new value asked for. "set map" also updates every duplicate of
// the key, so a map with duplicates converges. Two writers racing on a
// new key may both add it; the next SetMap sets both. spillway's
// controller is the map's only writer.
func (r *Runtime) SetMap(ctx context.Context, name, key, value string) error {
	if err := checkWord("map", name, false); err != nil {
		return err
	}
	if err := checkWord("map key", key, false); err != nil {
		return err
	}
	if err := checkWord("map value", value, false); err != nil {
		return err
	}
	err := r.execQuiet(ctx, fmt.Sprintf("set map %s %s %s", name, key, value))
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	var ce *CommandError
	if errors.As(err, &ce) && !strings.HasPrefix(ce.Answer, "entry not found.") {
		return err // the map itself is unknown
	}
	return r.execQuiet(ctx, fmt.Sprintf("add map %s %s %s", name, key, value))
}

// ReplaceMap makes entries, in their order, the whole content of a map, in
// one step for the requests: "prepare map" a new version, "add map
// @VERSION" each entry, "commit map @VERSION". A lookup sees the old
// content or the new, never a mix. No entries empties the map. On an
// error the prepared version is left uncommitted (HAProxy drops it at
// the next commit) and the map keeps its old content.
func (r *Runtime) ReplaceMap(ctx context.Context, name string, entries []MapEntry) error {
	if err := checkWord("map", name, false); err != nil {
		return err
	}
	for _, e := range entries {
		if err := checkWord("map key", e.Key, false); err != nil {
			return err
		}
		if err := checkWord("map value", e.Value, false); err != nil {
			return err
		}
	}
	command := "prepare map " + name
	answer, err := r.Exec(ctx, command)
	if err != nil {
		return err
	}
	version, ok := strings.CutPrefix(answer, "New version created: ")
	if _, perr := strconv.ParseUint(version, 10, 64); !ok || perr != nil {
		return &CommandError{Command: command, Answer: answer, Err: ErrRejected}
	}
	for _, e := range entries {
		if err := r.execQuiet(ctx, fmt.Sprintf("add map @%s %s %s %s", version, name, e.Key, e.Value)); err != nil {
			return err
		}
	}
	return r.execQuiet(ctx, fmt.Sprintf("commit map @%s %s", version, name))
}

// DelMap removes every entry of key from a map: "del map MAP KEY". A key
// the map does not hold is ErrNotFound.
func (r *Runtime) DelMap(ctx context.Context, name, key string) error {
	if err := checkWord("map", name, false); err != nil {
		return err
	}
	if err := checkWord("map key", key, false); err != nil {
		return err
	}
	return r.execQuiet(ctx, fmt.Sprintf("del map %s %s", name, key))
}

// Info returns "show info".
func (r *Runtime) Info(ctx context.Context) (Info, error) {
	return query(ctx, r, "show info", ParseInfo)
}

// query runs command and parses its answer with parse; an answer that
// does not parse is an error that names the command.
func query[T any](ctx context.Context, r *Runtime, command string, parse func(string) (T, error)) (T, error) {
	var zero T
	answer, err := r.Exec(ctx, command)
	if err != nil {
		return zero, err
	}
	v, err := parse(answer)
	if err != nil {
		return zero, fmt.Errorf("haproxy command %q: %w", command, err)
	}
	return v, nil
}

// ServerSpec is a server that AddServer adds: its address, its weight and
// HAProxy's check of its health port.
type ServerSpec struct {
	// Instance gives the service address (the server's) and the health
	// address (the check's).
	Instance lb.Instance
	// Weight is the server's weight, 0 to MaxWeight.
	Weight int
	// Health is the check: Interval, Rise and Fall are used; the path is
	// the backend's (option httpchk).
	Health HealthCheck
}

// AddServer adds a server to a backend at run time (HAProxy 2.4 and
// later; the backend's balancing must be dynamic, as the printed
// configuration's leastconn is), then enables its check: "add server
// BACKEND/SERVER ADDR weight W check port P inter ... fall F rise R",
// "enable health BACKEND/SERVER". The server starts in maintenance: set
// its state to take it into rotation.
func (r *Runtime) AddServer(ctx context.Context, backend, server string, s ServerSpec) error {
	if err := checkServer(backend, server); err != nil {
		return err
	}
	in := s.Instance
	if err := errors.Join(field.HostPort("service", in.Service), field.HostPort("health", in.Health)); err != nil {
		return fmt.Errorf("server %s/%s: %w: %w", backend, server, ErrBadArgument, err)
	}
	if s.Weight < 0 || s.Weight > MaxWeight {
		return fmt.Errorf("weight %d for %s/%s: %w: want 0 to %d", s.Weight, backend, server, ErrBadArgument, MaxWeight)
	}
	h := s.Health
	if h.Interval <= 0 || h.Rise < 1 || h.Fall < 1 {
		return fmt.Errorf("server %s/%s check %+v: %w: want a positive interval, rise and fall", backend, server, h, ErrBadArgument)
	}
	command := fmt.Sprintf("add server %s/%s %s weight %d check %s inter %s fall %d rise %d",
		backend, server, in.Service, s.Weight, checkTarget(in), ms(h.Interval), h.Fall, h.Rise)
	answer, err := r.Exec(ctx, command)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(answer, "New server registered.") {
		return &CommandError{Command: command, Answer: answer, Err: ErrRejected}
	}
	return r.execQuiet(ctx, fmt.Sprintf("enable health %s/%s", backend, server))
}

// DelServer removes a server that AddServer added: "del server
// BACKEND/SERVER". HAProxy refuses it (ErrRejected) unless the server is
// in maintenance and has no connection left; an unknown server is
// ErrNotFound.
func (r *Runtime) DelServer(ctx context.Context, backend, server string) error {
	if err := checkServer(backend, server); err != nil {
		return err
	}
	command := fmt.Sprintf("del server %s/%s", backend, server)
	answer, err := r.Exec(ctx, command)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(answer, "Server deleted.") {
		return &CommandError{Command: command, Answer: answer, Err: ErrRejected}
	}
	return nil
}
