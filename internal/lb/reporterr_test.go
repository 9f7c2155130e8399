package lb

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// TestRecordReportErrorWarns: a WARN for the first failure, none for the
// same reason within ReportWarnInterval, one when the reason changes and
// one a minute later; a usable report clears it; removed instances take
// their state with them.
func TestRecordReportErrorWarns(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(2)...)
	id := ids(1)[0]
	steps := []struct {
		at     time.Duration
		reason string
		warn   bool
	}{
		{0, health.UnusableWrongShape, true},
		{2 * time.Second, health.UnusableWrongShape, false},
		{30 * time.Second, health.UnusableWrongShape, false},
		{31 * time.Second, health.UnusableNotJSON, true},
		{61 * time.Second, health.UnusableNotJSON, false},
		{91 * time.Second, health.UnusableNotJSON, true},
		{92 * time.Second, health.UnusableNotJSON, false},
	}
	for _, s := range steps {
		warn, ok := p.RecordReportError(id, at(s.at), s.reason, "detail "+s.reason)
		if !ok || warn != s.warn {
			t.Errorf("at %v %s: warn, ok = %v, %v; want %v, true", s.at, s.reason, warn, ok, s.warn)
		}
	}
	st := p.Status(at(93 * time.Second))[0]
	if st.ReportError == nil || st.ReportError.Reason != health.UnusableNotJSON || !st.ReportError.Since.Equal(at(31*time.Second)) || st.ReportError.Count != 4 || st.ReportError.Detail != "detail not_json" {
		t.Errorf("status report_error = %+v", st.ReportError)
	}
	if p.Status(at(93 * time.Second))[1].ReportError != nil {
		t.Error("the other instance has a report error")
	}
	p.RecordReport(id, at(94*time.Second), readyReport(10, nil))
	if st := p.Status(at(95 * time.Second))[0]; st.ReportError != nil || st.Report == nil {
		t.Errorf("after a usable report: %+v", st)
	}
	// Usable again, then unusable for the same reason: news again? Only
	// when a minute has passed since the last WARN.
	if warn, _ := p.RecordReportError(id, at(100*time.Second), health.UnusableNotJSON, "x"); warn {
		t.Error("WARN within a minute of the last one after a usable report")
	}
	// An instance that is not healthy (never checked here) and whose
	// report cannot be reached is down, not misreporting: no WARN.
	other := ids(2)[1]
	if warn, ok := p.RecordReportError(other, at(100*time.Second), health.UnusableUnreachable, "refused"); warn || !ok {
		t.Errorf("unreachable report of an unhealthy instance: warn, ok = %v, %v", warn, ok)
	}
	if st := p.Status(at(100 * time.Second))[1]; st.ReportError == nil || st.ReportError.Reason != health.UnusableUnreachable {
		t.Errorf("unreachable not recorded: %+v", st.ReportError)
	}
	for i := range 2 {
		p.RecordCheck(other, at(100*time.Second+time.Duration(i)*time.Second), CheckPass)
	}
	if warn, _ := p.RecordReportError(other, at(102*time.Second), health.UnusableUnreachable, "refused"); !warn {
		t.Error("unreachable report of a healthy instance: no WARN")
	}
	p.Sync(ids(2)[1:], at(101*time.Second))
	if _, ok := p.RecordReportError(id, at(102*time.Second), health.UnusableNotJSON, "x"); ok {
		t.Error("removed instance still recorded")
	}
}
