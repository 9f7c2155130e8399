package discovery

import (
	"log/slog"
	"slices"
	"strings"

	"github.com/spillway-dev/spillway/internal/lb"
)

// publisher is the part of a Watch that talks to its caller: it passes a
// set to update when it differs from the last one passed, and logs a
// failure when it differs from the last failure (a file that stays
// broken is reported once, not at every re-read), and the recovery; so
// with the entries a source skipped. Owned by one Watch; not safe for
// concurrent use.
type publisher struct {
	update  func([]lb.Instance)
	log     *slog.Logger
	sent    []lb.Instance
	started bool
	failing string // the failure last logged, "" when healthy
	skips   string // the skipped entries last logged, "" when none
}

// set passes insts to update if they differ from the last set passed.
func (p *publisher) set(insts []lb.Instance) {
	if p.failing != "" {
		p.log.Info("discovery recovered", "instances", len(insts))
		p.failing = ""
	}
	if p.started && slices.Equal(p.sent, insts) {
		return
	}
	p.log.Info("discovery set", "instances", len(insts), "previous", len(p.sent), "first", !p.started)
	p.started = true
	p.sent = slices.Clone(insts)
	p.update(slices.Clone(insts))
}

// fail logs err, unless it is the failure already logged; the set stays.
func (p *publisher) fail(err error) {
	if msg := err.Error(); msg != p.failing {
		p.log.Warn("discovery failed; keeping the last set", "instances", len(p.sent), "error", msg)
		p.failing = msg
	}
}

// skipped logs the entries a read skipped (what they are: "SRV records",
// say), and why, unless they are the same as last time; the log says
// nothing while none are.
func (p *publisher) skipped(what string, skipped []string) {
	msg := strings.Join(skipped, "; ")
	if msg == p.skips {
		return
	}
	if msg != "" {
		p.log.Warn(what+" skipped", "skipped", len(skipped), "why", msg)
	}
	p.skips = msg
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
