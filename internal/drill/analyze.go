package drill

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/loadgen"
)

// Recovery criterion: time to recover ends at the first second of a run of
// recoverRun seconds in each of which at least recoverShare of the logins
// offered (attempts started) ended ok.
const (
	recoverRun   = 5
	recoverShare = 0.99
)

// ProfileRun is one profile's run: what happened, second by second, and
// its summary.
type ProfileRun struct {
	Profile Profile   `json:"profile"`
	Start   time.Time `json:"start"`
	// Seconds is the timeline: one row per second since the load's start.
	Seconds []Second `json:"seconds"`
	// Samples are the system's state, sampled every 250ms.
	Samples []Sample `json:"samples"`
	// Events are the phases as the drill applied them.
	Events []Event `json:"events"`
	// Load is the load generator's count of attempts.
	Load LoadResult `json:"load"`
	// Summary is the run's figures.
	Summary Summary `json:"-"`
	// Details are figures beyond the summary's.
	Details Details `json:"-"`

	attempts []attempt
}

// Second is one second of the timeline. Its outcome counts and latencies
// are those of the attempts that started in it (offered), however long
// they took to end; its instance figures are the last sample taken in it.
type Second struct {
	// T is the second's start, in seconds since the load's start.
	T     int    `json:"t"`
	Phase string `json:"phase"`
	// Backend is the backend-sim's mode.
	Backend string `json:"backend"`
	// Offered is the number of attempts (first tries and retries) started.
	Offered int `json:"offered"`
	// OK (2xx), ClientError (401 and other 4xx), Shed (503
	// dependency_unavailable, from the edge or an instance), Overloaded
	// (503 overloaded), Failed (any other 5xx, gateway errors) and
	// ClientTimeout (the client gave up) add up to Offered.
	OK            int `json:"ok"`
	ClientError   int `json:"client_error"`
	Shed          int `json:"shed"`
	Overloaded    int `json:"overloaded"`
	Failed        int `json:"failed"`
	ClientTimeout int `json:"client_timeout"`
	// Latencies at the client, milliseconds: of the ok attempts and of the
	// others (0 when none).
	OKP50Ms     float64 `json:"ok_p50_ms"`
	OKP99Ms     float64 `json:"ok_p99_ms"`
	FailedP50Ms float64 `json:"failed_p50_ms"`
	FailedP99Ms float64 `json:"failed_p99_ms"`
	// Running and Routable instances, health-based Replacements so far,
	// and the edge's shedding state for the backend.
	Running      int    `json:"running"`
	Routable     int    `json:"routable"`
	Replacements int    `json:"replacements"`
	Shedding     string `json:"shedding"`
}

// LoadResult sums the load generator's results.
type LoadResult struct {
	Requests       int64            `json:"requests"`
	Sent           int64            `json:"sent"`
	Answered       int64            `json:"answered"`
	Retries        int64            `json:"retries"`
	RetriesSkipped int64            `json:"retries_skipped"`
	Dropped        int64            `json:"dropped"`
	Outcomes       map[string]int64 `json:"outcomes"`
}

func (l *LoadResult) add(r loadgen.Result) {
	l.Requests += r.Requests
	l.Sent += r.Sent
	l.Answered += r.Answered
	l.Retries += r.Retries
	l.RetriesSkipped += r.RetriesSkipped
	l.Dropped += r.Dropped
	if l.Outcomes == nil {
		l.Outcomes = map[string]int64{}
	}
	for k, v := range r.Outcomes {
		l.Outcomes[k] += v
	}
}

// Summary is a profile's figures, as summary.json has them.
type Summary struct {
	// Recovered: a run of 5 seconds with at least 99% of offered logins
	// ok began after the backend recovered, within the observation.
	Recovered bool `json:"recovered"`
	// TimeToRecoverS is from the recovery to the first second of that
	// run, in seconds; nil when not recovered.
	TimeToRecoverS *float64 `json:"time_to_recover_s"`
	// Replacements counts health-based replacements during the load.
	Replacements int `json:"replacements"`
	// Sent and Lost (sent minus answered) count attempts; a client
	// timeout is answered, by the client.
	Sent           int64 `json:"sent"`
	Lost           int64 `json:"lost"`
	ClientTimeouts int64 `json:"client_timeouts"`
	// FailedP99Ms is the p99 latency of the attempts that started during
	// the disruption and did not end ok.
	FailedP99Ms float64 `json:"failed_p99_ms"`
	// Shares of offered logins that ended ok, before, during and after
	// the disruption.
	SuccessBefore float64 `json:"success_before"`
	SuccessDuring float64 `json:"success_during"`
	SuccessAfter  float64 `json:"success_after"`
}

// Details are a profile's figures beyond the summary's.
type Details struct {
	Answered    int64   `json:"answered"`
	Retries     int64   `json:"retries"`
	FailedP50Ms float64 `json:"failed_p50_ms"`
	FailedMaxMs float64 `json:"failed_max_ms"`
	// FailedSlowDuring counts the failed attempts of the disruption that
	// took 50ms or more, out of FailedDuring.
	FailedSlowDuring     int `json:"failed_slow_during"`
	FailedDuring         int `json:"failed_during"`
	ClientTimeoutsDuring int `json:"client_timeouts_during"`
	ReplacementsDuring   int `json:"replacements_during"`
	ReplacementsAfter    int `json:"replacements_after"`
	Restarts             int `json:"restarts"`
	// RoutableAfter is the share of samples after the recovery with every
	// instance routable.
	FullyRoutableAfter float64 `json:"fully_routable_after"`
	// RecoveryBoundS is the longest the spillway profile may take to
	// recover (recoveryBound), in seconds.
	RecoveryBoundS float64 `json:"recovery_bound_s"`
	// Recorded is the number of attempts the drill's ledger saw; it
	// equals Sent less Dropped.
	Recorded int `json:"recorded"`
}

// recoveryBound is the longest the spillway profile may take to recover
// after the backend returns: the guards' probes notice it within half a
// second, the edge's feedback ramp opens within round trips, and the
// clients' retries of the outage's last second must drain (issue 11's
// acceptance; 6 s with the fixed 5 s ramp before it).
const recoveryBound = 3 * time.Second

// analyze builds the timeline and the summary from the attempts and
// samples.
func (pr *ProfileRun) analyze(sc *Scenario) {
	w := sc.Window()
	end := sc.Duration()
	n := int(math.Ceil(end.Seconds()))
	type bucket struct {
		counts     [len(health.Outcomes)]int
		ok, failed []time.Duration
	}
	secs := make([]bucket, n)
	var failedDuring []time.Duration
	var okBefore, allBefore, okDuring, allDuring, okAfter, allAfter int
	for _, a := range pr.attempts {
		if k := int(a.start / time.Second); k >= 0 && k < n {
			b := &secs[k]
			b.counts[a.outcome]++
			if a.outcome == health.OutcomeOK {
				b.ok = append(b.ok, a.latency)
			} else {
				b.failed = append(b.failed, a.latency)
			}
		}
		ok := a.outcome == health.OutcomeOK
		switch {
		case a.start < w.Start:
			allBefore++
			if ok {
				okBefore++
			}
		case a.start < w.End:
			allDuring++
			if ok {
				okDuring++
			} else {
				failedDuring = append(failedDuring, a.latency)
				if a.outcome == health.OutcomeClientTimeout {
					pr.Details.ClientTimeoutsDuring++
				}
			}
		default:
			allAfter++
			if ok {
				okAfter++
			}
		}
	}

	pr.Seconds = make([]Second, n)
	si := 0
	for k := range n {
		b := &secs[k]
		s := Second{T: k}
		s.Phase, s.Backend = sc.phaseAt(time.Duration(k) * time.Second)
		s.OK = b.counts[health.OutcomeOK]
		s.ClientError = b.counts[health.OutcomeClientError]
		s.Shed = b.counts[health.OutcomeShed]
		s.Overloaded = b.counts[health.OutcomeOverloaded]
		s.Failed = b.counts[health.OutcomeFailed]
		s.ClientTimeout = b.counts[health.OutcomeClientTimeout]
		s.Offered = s.OK + s.ClientError + s.Shed + s.Overloaded + s.Failed + s.ClientTimeout
		s.OKP50Ms, s.OKP99Ms = quantileMs(b.ok, 0.50), quantileMs(b.ok, 0.99)
		s.FailedP50Ms, s.FailedP99Ms = quantileMs(b.failed, 0.50), quantileMs(b.failed, 0.99)
		for si < len(pr.Samples) && pr.Samples[si].T < float64(k+1) {
			si++
		}
		if si > 0 {
			last := pr.Samples[si-1]
			s.Running, s.Routable, s.Replacements, s.Shedding = last.Running, last.Routable, last.Replacements, last.Shedding
		}
		pr.Seconds[k] = s
	}

	sum := &pr.Summary
	sum.Sent = pr.Load.Sent
	sum.Lost = pr.Load.Sent - pr.Load.Answered
	sum.ClientTimeouts = pr.Load.Outcomes[health.OutcomeClientTimeout.String()]
	sum.SuccessBefore = share(okBefore, allBefore)
	sum.SuccessDuring = share(okDuring, allDuring)
	sum.SuccessAfter = share(okAfter, allAfter)
	sum.FailedP99Ms = quantileMs(failedDuring, 0.99)
	pr.Details.FailedP50Ms = quantileMs(failedDuring, 0.50)
	pr.Details.FailedMaxMs = quantileMs(failedDuring, 1)
	pr.Details.FailedDuring = len(failedDuring)
	for _, d := range failedDuring {
		if d >= 50*time.Millisecond {
			pr.Details.FailedSlowDuring++
		}
	}
	pr.Details.Answered = pr.Load.Answered
	pr.Details.Retries = pr.Load.Retries
	pr.Details.Recorded = len(pr.attempts)
	pr.Details.RecoveryBoundS = recoveryBound.Seconds()

	// Replacements: counted from the load's start (the fleet's counter
	// may include earlier ones).
	base, atStart, atEnd := 0, 0, 0
	if len(pr.Samples) > 0 {
		base = pr.Samples[0].Replacements
		last := pr.Samples[len(pr.Samples)-1]
		sum.Replacements = last.Replacements - base
		pr.Details.Restarts = last.Restarts - pr.Samples[0].Restarts
	}
	full, after := 0, 0
	for _, s := range pr.Samples {
		switch {
		case s.T < w.Start.Seconds():
			atStart = s.Replacements
		case s.T < w.End.Seconds():
			atEnd = s.Replacements
		default:
			after++
			if s.Routable >= sc.Fleet.Instances {
				full++
			}
		}
	}
	if atStart == 0 {
		atStart = base
	}
	if atEnd == 0 {
		atEnd = atStart
	}
	pr.Details.ReplacementsDuring = atEnd - atStart
	pr.Details.ReplacementsAfter = base + sum.Replacements - atEnd
	pr.Details.FullyRoutableAfter = share(full, after)

	// Time to recover, on a grid of seconds that starts at the recovery.
	var offered, okd []int
	for _, a := range pr.attempts {
		if a.start < w.End {
			continue
		}
		j := int((a.start - w.End) / time.Second)
		for len(offered) <= j {
			offered, okd = append(offered, 0), append(okd, 0)
		}
		offered[j]++
		if a.outcome == health.OutcomeOK {
			okd[j]++
		}
	}
	whole := int((end - w.End) / time.Second) // complete seconds observed
	for j := 0; j+recoverRun <= whole && j+recoverRun <= len(offered); j++ {
		good := true
		for k := j; k < j+recoverRun; k++ {
			if offered[k] == 0 || float64(okd[k]) < recoverShare*float64(offered[k]) {
				good = false
				break
			}
		}
		if good {
			sum.Recovered = true
			sum.TimeToRecoverS = new(float64(j))
			break
		}
	}
}

// phaseAt returns the name of the phase in force at t and the backend's
// mode then.
func (s *Scenario) phaseAt(t time.Duration) (name, backend string) {
	backend = "up"
	for _, p := range s.Phases {
		if p.At > t {
			break
		}
		name = p.Name
		if p.Backend != "" {
			backend = p.Backend
		}
	}
	return name, backend
}

func share(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// quantileMs is the q-quantile (nearest rank) of ds in milliseconds, 0 for
// none; q = 1 is the maximum.
func quantileMs(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	i = min(max(i, 0), len(s)-1)
	return math.Round(float64(s[i])/float64(time.Microsecond)) / 1000
}

// Line is the summary in one line, for progress output.
func (s Summary) Line() string {
	ttr := "not recovered"
	if s.Recovered {
		ttr = fmt.Sprintf("recovered in %gs", *s.TimeToRecoverS)
	}
	return fmt.Sprintf("%s, %d replacements, ok %.1f%% before / %.1f%% during / %.1f%% after, failed p99 %.0fms during, %d sent, %d lost, %d client timeouts",
		ttr, s.Replacements, 100*s.SuccessBefore, 100*s.SuccessDuring, 100*s.SuccessAfter, s.FailedP99Ms, s.Sent, s.Lost, s.ClientTimeouts)
}
