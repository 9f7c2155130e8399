package lb

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func endpoints(n int) []*Endpoint {
	eps := make([]*Endpoint, n)
	for i := range eps {
		eps[i] = NewEndpoint(fmt.Sprintf("10.0.0.%d:8080", i+1))
	}
	return eps
}

func snapshot(eps []*Endpoint, ramps map[int]SlowStart) *Snapshot {
	var cands []Candidate
	for i, e := range eps {
		cands = append(cands, Candidate{Endpoint: e, SlowStart: ramps[i]})
	}
	return NewSnapshot(cands, false)
}

func TestPickSmallSets(t *testing.T) {
	eps := endpoints(2)
	tests := []struct {
		name    string
		set     []*Endpoint
		exclude *Endpoint
		want    *Endpoint // nil: no pick
	}{
		{"empty", nil, nil, nil},
		{"one", eps[:1], nil, eps[0]},
		{"one, excluded", eps[:1], eps[0], nil},
		{"two, first excluded", eps, eps[0], eps[1]},
		{"two, second excluded", eps, eps[1], eps[0]},
		{"exclude not in the set", eps[:1], eps[1], eps[0]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPicker(seeded(1))
			p.Store(snapshot(tt.set, nil))
			for range 20 {
				got, ok := p.Pick(t0, tt.exclude)
				if got != tt.want || ok != (tt.want != nil) {
					t.Fatalf("Pick = %v, %v; want %v", got, ok, tt.want)
				}
				if ok {
					got.Release()
				}
			}
		})
	}
	var p Picker // the zero Picker is empty, then usable
	if _, ok := p.Pick(t0, nil); ok {
		t.Fatal("empty picker picked")
	}
	p.Store(snapshot(eps, nil))
	if e, ok := p.Pick(t0, nil); !ok {
		t.Fatal("zero picker with a snapshot did not pick")
	} else {
		e.Release()
	}
	p.Store(nil)
	if _, ok := p.Pick(t0, nil); ok {
		t.Fatal("picker with a nil snapshot picked")
	}
}

func TestPickComparesWeightedOutstanding(t *testing.T) {
	ss := DefaultSlowStartConfig()
	tests := []struct {
		name        string
		outstanding [2]int64
		ramp        bool // endpoint 0 just started its ramp: weight 0.1
		want        int
	}{
		{"least outstanding wins", [2]int64{5, 0}, false, 1},
		{"least outstanding wins, other side", [2]int64{0, 3}, false, 0},
		{"warming instance loses at equal load", [2]int64{0, 0}, true, 1},
		{"warming instance loses until the other has 10× its load", [2]int64{0, 8}, true, 1},
		{"warming instance wins beyond its weight's share", [2]int64{0, 10}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := endpoints(2)
			ramps := map[int]SlowStart{}
			if tt.ramp {
				ramps[0] = ss.Start(t0)
			}
			for i, n := range tt.outstanding {
				eps[i].outstanding.Store(n)
			}
			p := NewPicker(seeded(3))
			p.Store(snapshot(eps, ramps))
			for range 10 {
				got, _ := p.Pick(t0, nil)
				if got != eps[tt.want] {
					t.Fatalf("picked %s, want %s", got.ID(), eps[tt.want].ID())
				}
				got.Release()
			}
		})
	}
}

// simulate runs a closed loop at a constant concurrency: each step picks
// an endpoint and completes one random request in flight. It returns the
// picks per endpoint.
func simulate(p *Picker, eps []*Endpoint, now time.Time, concurrency, steps int, exclude *Endpoint) map[*Endpoint]int {
	r := rand.New(rand.NewPCG(11, 12))
	var inflight []*Endpoint
	picks := map[*Endpoint]int{}
	for range steps {
		e, ok := p.Pick(now, exclude)
		if !ok {
			panic("no pick")
		}
		picks[e]++
		inflight = append(inflight, e)
		if len(inflight) > concurrency {
			i := r.IntN(len(inflight))
			inflight[i].Release()
			inflight[i] = inflight[len(inflight)-1]
			inflight = inflight[:len(inflight)-1]
		}
	}
	for _, e := range inflight {
		e.Release()
	}
	return picks
}

func TestPickSlowStartShare(t *testing.T) {
	eps := endpoints(4)
	ramp := DefaultSlowStartConfig().Start(t0) // endpoint 3 is new
	p := NewPicker(seeded(5))
	p.Store(snapshot(eps, map[int]SlowStart{3: ramp}))
	const steps = 40000
	for _, tt := range []struct {
		at       time.Duration
		maxShare float64 // of the new instance
		minShare float64
	}{
		{0, 0.06, 0.005},               // weight 0.1
		{5 * time.Second, 0.20, 0.08},  // weight 0.5: about 0.5/3.5
		{10 * time.Second, 0.28, 0.22}, // warm: a quarter
	} {
		picks := simulate(p, eps, t0.Add(tt.at), 40, steps, nil)
		share := float64(picks[eps[3]]) / steps
		t.Logf("+%v: new instance share %.3f", tt.at, share)
		if share > tt.maxShare || share < tt.minShare {
			t.Errorf("at +%v the new instance got %.3f of picks, want in [%v, %v]", tt.at, share, tt.minShare, tt.maxShare)
		}
		for _, e := range eps {
			if e.Outstanding() != 0 {
				t.Fatalf("%s: %d outstanding after all releases", e.ID(), e.Outstanding())
			}
		}
	}
}

func TestPickBalancesAndExcludes(t *testing.T) {
	eps := endpoints(5)
	p := NewPicker(seeded(9))
	p.Store(snapshot(eps, nil))
	const steps = 50000
	picks := simulate(p, eps, t0, 20, steps, eps[2])
	if picks[eps[2]] != 0 {
		t.Fatalf("excluded endpoint picked %d times", picks[eps[2]])
	}
	for i, e := range eps {
		if i == 2 {
			continue
		}
		approx(t, e.ID()+" share", float64(picks[e])/steps, 0.25, 0.02)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	eps := endpoints(8)
	p := NewPicker(nil)
	p.Store(snapshot(eps, map[int]SlowStart{0: DefaultSlowStartConfig().Start(t0)}))
	allocs := testing.AllocsPerRun(1000, func() {
		e, _ := p.Pick(at(time.Second), eps[1])
		e.Release()
	})
	if allocs != 0 {
		t.Fatalf("Pick allocates %v times", allocs)
	}
}

// TestPickConcurrent picks and releases from many goroutines while
// snapshots are swapped (run with -race): counts must return to zero.
func TestPickConcurrent(t *testing.T) {
	eps := endpoints(6)
	p := NewPicker(nil)
	p.Store(snapshot(eps, nil))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				e, ok := p.Pick(t0, nil)
				if !ok {
					continue
				}
				if r, ok := p.Pick(t0, e); ok { // a retry elsewhere
					if r == e {
						panic("retry picked the excluded endpoint")
					}
					r.Release()
				}
				e.Release()
			}
		})
	}
	for i := range 200 {
		p.Store(snapshot(eps[:2+i%5], nil))
	}
	wg.Wait()
	for _, e := range eps {
		if n := e.Outstanding(); n != 0 {
			t.Fatalf("%s: %d outstanding", e.ID(), n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{4, 32} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			eps := endpoints(n)
			p := NewPicker(nil)
			p.Store(snapshot(eps, map[int]SlowStart{0: DefaultSlowStartConfig().Start(t0)}))
			now := at(time.Second)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e, _ := p.Pick(now, nil)
					e.Release()
				}
			})
		})
	}
	b.Run("instances=4/exclude", func(b *testing.B) {
		eps := endpoints(4)
		p := NewPicker(nil)
		p.Store(snapshot(eps, nil))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				e, _ := p.Pick(t0, eps[1])
				e.Release()
			}
		})
	})
}

// TestPickRespectsCaps: with caps (each balancer's part of an instance's
// limit), concurrent picks that are never released fill every instance
// exactly to its cap, whatever the draws, and only then go past (the
// edge bound admitted more than the rounded caps add up to); the
// impaired draw and PickAvoiding keep them too.
func TestPickRespectsCaps(t *testing.T) {
	for _, impaired := range []bool{false, true} {
		t.Run(fmt.Sprintf("impaired=%v", impaired), func(t *testing.T) {
			eps := endpoints(4)
			var cands []Candidate
			for _, e := range eps {
				cands = append(cands, Candidate{Endpoint: e, Cap: 10 * 0.5}) // limit 10, two balancers
			}
			s := NewSnapshot(cands, false)
			if impaired {
				s.impaired = make([]uint64, len(cands)) // nobody impaired, but the impaired draw
			}
			p := NewPicker(nil) // math/rand/v2: safe for the concurrent picks
			p.Store(s)
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					if _, ok := p.PickFor(time.Now(), nil, "/"); !ok {
						t.Error("no pick")
					}
				})
			}
			wg.Wait()
			for _, e := range eps {
				if o := e.Outstanding(); o != 5 {
					t.Errorf("%s: %d outstanding, want its cap 5", e.ID(), o)
				}
			}
			e, ok := p.PickAvoiding(time.Now(), eps[:1], "/")
			if !ok || e == eps[0] {
				t.Errorf("PickAvoiding over full candidates = %v, %v: want one of the others, past its cap", e, ok)
			}
		})
	}
}
