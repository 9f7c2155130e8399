package lb

import (
	"math"
	"testing"
)

func TestSharedLimit(t *testing.T) {
	for _, tt := range []struct {
		capacity int
		share    float64
		want     int
	}{
		{100, 1, 100},
		{100, 0.5, 50},
		{101, 0.5, 50},         // floor: together never above the fleet's
		{9, 1.0 / 3, 3},        // not 2 for a rounding of 1/3
		{10, 2.0 / 3, 6},       // 6.67
		{10, 0.7, 7},           // 7.000000000000001 or 6.99...: 7
		{3, 0.1, 1},            // at least 1
		{0, 0.5, 0},            // a fleet that reports 0 gets 0
		{100, 0, 100},          // not a share: the whole
		{100, -1, 100},         // not a share: the whole
		{100, math.NaN(), 100}, // not a share: the whole
		{100, 2, 100},          // above 1: the whole
	} {
		if got := sharedLimit(tt.capacity, tt.share); got != tt.want {
			t.Errorf("sharedLimit(%d, %v) = %d, want %d", tt.capacity, tt.share, got, tt.want)
		}
	}
}

func TestPeerShareNormalized(t *testing.T) {
	for _, tt := range []struct{ in, want PeerShare }{
		{PeerShare{Share: 0.25, Peers: 4}, PeerShare{Share: 0.25, Peers: 4}},
		{PeerShare{}, PeerShare{Share: 1, Peers: 1}},
		{PeerShare{Share: math.NaN(), Peers: 3}, PeerShare{Share: 1, Peers: 3}},
		{PeerShare{Share: 1.5, Peers: 2}, PeerShare{Share: 1, Peers: 2}},
	} {
		if got := tt.in.normalized(); got != tt.want {
			t.Errorf("%+v.normalized() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
