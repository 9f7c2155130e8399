package procgroup

import (
	"errors"
	"net"
	"os/exec"
	"testing"
)

func TestFreeAddrs(t *testing.T) {
	addrs, err := FreeAddrs("127.0.0.1", 3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s given twice in %v", a, addrs)
		}
		seen[a] = true
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s is not free: %v", a, err)
		}
		ln.Close()
	}
	if _, err := FreeAddrs("192.0.2.1", 1); err == nil {
		t.Error("an address this host does not have gave a port")
	}
}

func TestSpawnerClosed(t *testing.T) {
	s := NewSpawner()
	s.Close()
	s.Close() // twice is fine
	if err := s.Start(exec.Command("true")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}
}
