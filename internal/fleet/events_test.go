package fleet

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRingKeepsTheLatest(t *testing.T) {
	var r ring
	if got := r.since(0); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	for i := range EventCapacity + 10 {
		r.add(Event{Kind: EventStarted, Detail: string(rune('a' + i%26))})
	}
	all := r.since(0)
	if len(all) != EventCapacity {
		t.Fatalf("%d events kept, want %d", len(all), EventCapacity)
	}
	for i, e := range all {
		if want := uint64(11 + i); e.Seq != want {
			t.Fatalf("event %d has seq %d, want %d (oldest first)", i, e.Seq, want)
		}
	}
	tail := r.since(uint64(EventCapacity + 8))
	if len(tail) != 2 || tail[0].Seq != uint64(EventCapacity+9) {
		t.Fatalf("since: %+v", tail)
	}
}

func TestMetricsRegisterOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := newMetrics(reg); err == nil {
		t.Fatal("a second fleet on the same registry must fail, not panic")
	}
	if _, err := newMetrics(nil); err != nil {
		t.Fatal(err)
	}
}
