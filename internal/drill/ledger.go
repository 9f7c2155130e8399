package drill

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/timeline"
)

// attempt is one request attempt as its client saw it: when it started
// (since the load's start), how long it took and how it ended.
type attempt struct {
	start   time.Duration
	latency time.Duration
	outcome health.Outcome
}

// ledger records every attempt the load generator sends, by the time it
// started, so a second's figures are those of the logins offered in it
// (a timeline.Recorder files outcomes by the second they end in). It also
// feeds live, a Recorder by completion, for the progress line. Safe for
// concurrent use.
type ledger struct {
	t0   time.Time
	live *timeline.Recorder

	mu       sync.Mutex
	attempts []attempt
}

func newLedger(t0 time.Time) *ledger {
	return &ledger{t0: t0, live: timeline.New(8, nil)}
}

func (l *ledger) record(start time.Time, o health.Outcome) {
	d := time.Since(start)
	l.live.Observe(o, d)
	l.mu.Lock()
	l.attempts = append(l.attempts, attempt{start: start.Sub(l.t0), latency: d, outcome: o})
	l.mu.Unlock()
}

// all returns the attempts recorded so far.
func (l *ledger) all() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]attempt(nil), l.attempts...)
}

// transport is the load generator's round tripper: base, with every
// attempt recorded in the ledger once its answer has been read (or it
// failed). Its outcomes are the load generator's own (health.ClassifyAnswer;
// a timeout is the client giving up, any other error a failure), so the
// ledger and loadgen.Result agree.
type transport struct {
	base http.RoundTripper
	l    *ledger
}

var _ http.RoundTripper = (*transport)(nil)

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.l.record(start, errOutcome(req.Context(), err))
		return nil, err
	}
	resp.Body = &recordedBody{rc: resp.Body, ctx: req.Context(), status: resp.StatusCode, header: resp.Header, start: start, l: t.l}
	return resp, nil
}

// errOutcome classifies a failed attempt as the load generator does.
func errOutcome(ctx context.Context, err error) health.Outcome {
	var ne net.Error
	if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		return health.OutcomeClientTimeout
	}
	return health.OutcomeFailed
}

// headBytes is how much of an answer is kept to classify it.
const headBytes = health.ReasonBodyBytes

// recordedBody keeps the start of an answer and records the attempt when
// the load generator closes it.
type recordedBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	status int
	header http.Header
	start  time.Time
	l      *ledger

	head    bytes.Buffer
	readErr error
	once    sync.Once
}

func (b *recordedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if room := headBytes - b.head.Len(); room > 0 {
		b.head.Write(p[:min(n, room)])
	}
	if err != nil && !errors.Is(err, io.EOF) && b.readErr == nil {
		b.readErr = err
	}
	return n, err
}

func (b *recordedBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		if b.readErr != nil {
			b.l.record(b.start, errOutcome(b.ctx, b.readErr))
			return
		}
		b.l.record(b.start, health.ClassifyAnswer(b.status, b.header, b.head.Bytes()))
	})
	return err
}
