package fleet

import (
	"errors"
	"fmt"
	"strings"
	"time"
	// The time_zone names resolve the same on every host, including one
	// without a zoneinfo database (a scratch or distroless image): the
	// binary carries its own (about 450 kB).
	_ "time/tzdata"
	"unicode"

	"github.com/robfig/cron/v3"

	"github.com/spillway-dev/spillway/internal/field"
)

// Scope values of a schedule window: who must have its instances.
const (
	// ScopeHost: this host keeps at least the window's instances.
	ScopeHost = "host"
	// ScopeFleet: the fleet as a whole keeps at least the window's
	// instances, split over the live hosts: this host keeps
	// ceil(instances / hosts) (Options.Hosts).
	ScopeFleet = "fleet"
)

const (
	// MaxWindows bounds Config.Schedule.
	MaxWindows = 64
	// maxWindowName bounds a window's name (it is in logs, events and
	// the status, never in a metric label).
	maxWindowName = 64
	// DefaultScheduleLead is schedule_lead's default: how long before a
	// window opens its extra instances start. See Config.ScheduleLead.
	DefaultScheduleLead = 2 * time.Minute
)

// Window is one entry of fleet.schedule: a recurring time window and the
// instances it needs. From schedule_lead before each start until duration
// after it, the fleet keeps at least Instances (or this host's share of
// them); after it closes the extra instances are stopped.
type Window struct {
	// Name identifies the window in logs, events and the status. Required,
	// unique, at most 64 printable characters.
	Name string `yaml:"name"`
	// Start is when the window opens: a cron expression of five fields
	// (minute hour day-of-month month day-of-week; "0 8 * * 1-5" is 08:00
	// Monday to Friday), read in TimeZone. Required. Ranges, lists, steps
	// and names (mon, jan) are accepted; descriptors (@daily) and a
	// CRON_TZ= prefix are not (the zone goes in TimeZone).
	Start string `yaml:"start"`
	// Duration is how long the window stays open after each start, in
	// elapsed time (a window that spans a daylight-saving change closes
	// Duration after it opened, whatever the wall clock says). Required,
	// above 0.
	Duration time.Duration `yaml:"duration"`
	// TimeZone is the IANA time zone Start is read in, such as
	// "Europe/Berlin": 08:00 stays 08:00 local time across daylight-saving
	// changes. A start in the hour skipped when clocks go forward does not
	// happen that day; one in the hour repeated when they go back happens
	// twice (an hour apart: with a duration of an hour or more, the two
	// make one longer window). Default "UTC".
	TimeZone string `yaml:"time_zone"`
	// Instances is the fewest instances needed while the window is open,
	// from 1 to MaxSize. The fleet keeps the largest of size and every
	// open window's need.
	Instances int `yaml:"instances"`
	// Scope is "host" (default: this host keeps at least Instances) or
	// "fleet" (the whole fleet needs Instances: this host keeps
	// ceil(Instances / live hosts)).
	Scope string `yaml:"scope"`
}

// cronParser reads Window.Start: five fields, no seconds, no descriptors.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// errNoTZPrefix: the time zone has a field of its own.
var errNoTZPrefix = errors.New("the time zone goes in time_zone, not in start")

// scheduleRef is the instant Validate looks for a window's first start
// after: an expression that matches no date (30 2 31 2 *, February 31st)
// has none within the parser's five years from any instant.
var scheduleRef = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// resolve fills the defaults of w's empty fields.
func (w *Window) resolve() {
	if w.TimeZone == "" {
		w.TimeZone = "UTC"
	}
	if w.Scope == "" {
		w.Scope = ScopeHost
	}
}

// location loads w's time zone ("" is UTC). "Local" is refused: it would
// differ from host to host.
func (w *Window) location() (*time.Location, error) {
	if w.TimeZone == "" {
		return time.UTC, nil
	}
	if w.TimeZone == "Local" {
		return nil, errors.New(`not an IANA time zone name such as "Europe/Berlin" ("Local" differs from host to host)`)
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return nil, errors.New(`not a known IANA time zone name such as "Europe/Berlin"`)
	}
	return loc, nil
}

// spec parses w's start, read in loc.
func (w *Window) spec(loc *time.Location) (*cron.SpecSchedule, error) {
	s := strings.TrimSpace(w.Start)
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		// robfig/cron v3.0.1 also panics on such a prefix without a space.
		return nil, errNoTZPrefix
	}
	sched, err := cronParser.Parse(s)
	if err != nil {
		return nil, err
	}
	spec, ok := sched.(*cron.SpecSchedule)
	if !ok { // only descriptors (refused above by the parser's options) give another type
		return nil, fmt.Errorf("not a five-field cron expression")
	}
	spec.Location = loc
	return spec, nil
}

// validateSchedule reports every problem of the schedule and its lead.
func validateSchedule(ws []Window, lead time.Duration) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(field.NonNegative("schedule_lead", lead))
	if len(ws) > MaxWindows {
		add(field.New("schedule", len(ws), fmt.Sprintf("at most %d windows", MaxWindows)))
		return errors.Join(errs...)
	}
	names := make(map[string]int, len(ws))
	for i := range ws {
		w := &ws[i]
		path := fmt.Sprintf("schedule[%d]", i)
		switch {
		case w.Name == "":
			add(field.New(path+".name", w.Name, "required: names the window in logs and events"))
		case len(w.Name) > maxWindowName || strings.ContainsFunc(w.Name, func(r rune) bool { return !unicode.IsPrint(r) }):
			add(field.New(path+".name", w.Name, fmt.Sprintf("at most %d printable characters", maxWindowName)))
		default:
			if j, dup := names[w.Name]; dup {
				add(field.New(path+".name", w.Name, fmt.Sprintf("schedule[%d] has this name too; names must be unique", j)))
			}
			names[w.Name] = i
		}
		loc, err := w.location()
		if err != nil {
			add(field.New(path+".time_zone", w.TimeZone, err.Error()))
			loc = time.UTC // still check start
		}
		switch spec, err := w.spec(loc); {
		case err != nil:
			add(field.New(path+".start", w.Start, err.Error()))
		case spec.Next(scheduleRef).IsZero():
			add(field.New(path+".start", w.Start, "matches no date"))
		}
		add(field.Positive(path+".duration", w.Duration))
		add(field.Between(path+".instances", w.Instances, 1, MaxSize))
		if w.Scope != "" && w.Scope != ScopeHost && w.Scope != ScopeFleet {
			add(field.New(path+".scope", w.Scope, fmt.Sprintf("must be %q or %q", ScopeHost, ScopeFleet)))
		}
	}
	return errors.Join(errs...)
}

// schedule is the runtime form of fleet.schedule: each window parsed in
// its time zone, and what each asked at the last evaluation. Not safe for
// concurrent use; the Plan owns it.
type schedule struct {
	lead    time.Duration
	windows []*window
}

type window struct {
	cfg  Window
	spec *cron.SpecSchedule
	// active: the window (or its lead) was open at the last evaluation.
	active bool
	// held is the most instances it has asked of this host since it
	// became active: a fleet-scope window's share does not fall while it
	// is open because hosts joined (it rises at once when hosts leave).
	held int
}

// newSchedule builds the schedule of validated windows.
func newSchedule(ws []Window, lead time.Duration) (*schedule, error) {
	s := &schedule{lead: lead}
	for i, w := range ws {
		w.resolve()
		loc, err := w.location()
		if err != nil {
			return nil, fmt.Errorf("schedule[%d].time_zone: %w", i, err)
		}
		spec, err := w.spec(loc)
		if err != nil {
			return nil, fmt.Errorf("schedule[%d].start: %w", i, err)
		}
		s.windows = append(s.windows, &window{cfg: w, spec: spec})
	}
	return s, nil
}

// occurrence is the window's occurrence that is open at now, or the next
// one: it opens at open and closes at close (exclusive); covered reports
// whether now is within [open-lead, close). Zero times when it has no
// occurrence within the parser's five years.
func (w *window) occurrence(now time.Time, lead time.Duration) (open, close time.Time, covered bool) {
	// The first start after now-duration is the earliest whose window is
	// still open at now, or the next one.
	open = w.spec.Next(now.Add(-w.cfg.Duration))
	if open.IsZero() {
		return open, open, false
	}
	return open, open.Add(w.cfg.Duration), !open.After(now.Add(lead))
}

// share is what the window asks of this host when hosts hosts are live.
func (w *window) share(hosts int) int {
	if w.cfg.Scope == ScopeFleet {
		return (w.cfg.Instances + hosts - 1) / hosts
	}
	return w.cfg.Instances
}

// want is the schedule's verdict at one instant.
type want struct {
	n int // instances this host keeps: size, or a window's need if larger
	// w is the window that sets n (the first of equals); nil when size does.
	w           *window
	open, close time.Time // w's occurrence
	hosts       int
	// next is when the verdict may next change by time alone: a window's
	// lead begins or a window closes. Zero when nothing is scheduled.
	next time.Time
}

// update evaluates the schedule at now for a fleet of size on hosts live
// hosts, and remembers what each window asked.
func (s *schedule) update(now time.Time, size, hosts int) want {
	r := want{n: size, hosts: hosts}
	for _, w := range s.windows {
		open, close, covered := w.occurrence(now, s.lead)
		if open.IsZero() {
			w.active, w.held = false, 0
			continue
		}
		edge := close
		if covered {
			need := w.share(hosts)
			if w.active {
				need = max(need, w.held)
			}
			w.active, w.held = true, need
			if need > r.n {
				r.n, r.w, r.open, r.close = need, w, open, close
			}
		} else {
			w.active, w.held = false, 0
			edge = open.Add(-s.lead)
		}
		if r.next.IsZero() || edge.Before(r.next) {
			r.next = edge
		}
	}
	return r
}

// describe says why w keeps what it keeps, for events and logs.
func (w want) describe(size int) string {
	if w.w == nil {
		return fmt.Sprintf("size %d: no open window needs more", size)
	}
	c := w.w.cfg
	loc := w.w.spec.Location
	need := fmt.Sprintf("%d per host", c.Instances)
	if c.Scope == ScopeFleet {
		need = fmt.Sprintf("%d over %d hosts", c.Instances, w.hosts)
		if w.hosts == 1 {
			need = fmt.Sprintf("%d over 1 host", c.Instances)
		}
	}
	const layout = "Mon 15:04"
	return fmt.Sprintf("window %q (%s) %s to %s %s", c.Name, need,
		w.open.In(loc).Format(layout), w.close.In(loc).Format(layout), c.TimeZone)
}

// ScheduleStatus is how many instances the fleet keeps, and why.
type ScheduleStatus struct {
	// Size is the configured size: the fewest instances kept.
	Size int `json:"size"`
	// Target is the number of instances the fleet keeps now: Size, or
	// more while a schedule window (or its lead) is open. It is the
	// spillway_fleet_target_instances gauge.
	Target int `json:"target"`
	// Wanted is what the schedule asked at its last evaluation. It differs
	// from Target only while a scale-down waits for a rolling restart to
	// end.
	Wanted int `json:"wanted"`
	// Window names the window that sets Wanted; empty when Size does.
	Window string `json:"window,omitempty"`
	// Opens and Closes are that window's current occurrence.
	Opens  time.Time `json:"opens,omitzero"`
	Closes time.Time `json:"closes,omitzero"`
	// Hosts is the number of live hosts fleet-scope windows are split
	// over (1 without Options.Hosts).
	Hosts int `json:"hosts"`
	// NextChange is when the schedule next changes by time alone (a lead
	// begins or a window closes); zero without a schedule.
	NextChange time.Time `json:"next_change,omitzero"`
}
