package haproxy

// This file holds what HAProxy answers: the types and parsers of "show
// servers state", "show map" and "show info".

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// OpState is a server's operational state (srv_op_state).
type OpState int

// The operational states of HAProxy's SRV_ST_*.
const (
	OpStopped  OpState = 0 // down: checks failed, or maintenance
	OpStarting OpState = 1 // up, in slow start
	OpRunning  OpState = 2 // up
	OpStopping OpState = 3 // up, but checks are failing toward down
)

func (s OpState) String() string {
	switch s {
	case OpStopped:
		return "stopped"
	case OpStarting:
		return "starting"
	case OpRunning:
		return "running"
	case OpStopping:
		return "stopping"
	}
	return "opstate(" + strconv.Itoa(int(s)) + ")"
}

// AdminState is a server's administrative state (srv_admin_state): bits
// of HAProxy's SRV_ADMF_*.
type AdminState uint

// The bits of AdminState.
const (
	AdminForcedMaint     AdminState = 0x01 // set server ... state maint
	AdminInheritedMaint  AdminState = 0x02 // tracks a server in maintenance
	AdminConfigMaint     AdminState = 0x04 // "disabled" in the configuration
	AdminForcedDrain     AdminState = 0x08 // set server ... state drain
	AdminInheritedDrain  AdminState = 0x10 // tracks a draining server
	AdminResolutionMaint AdminState = 0x20 // its address did not resolve
	AdminHostnameMaint   AdminState = 0x40 // set server ... fqdn pending
)

// Maint reports whether any maintenance bit is set: the server takes no
// traffic.
func (a AdminState) Maint() bool {
	return a&(AdminForcedMaint|AdminInheritedMaint|AdminConfigMaint|AdminResolutionMaint|AdminHostnameMaint) != 0
}

// Drain reports whether any drain bit is set.
func (a AdminState) Drain() bool { return a&(AdminForcedDrain|AdminInheritedDrain) != 0 }

// Server is one row of "show servers state".
type Server struct {
	BackendID     int        // be_id
	Backend       string     // be_name
	ID            int        // srv_id
	Name          string     // srv_name
	Addr          string     // srv_addr
	Port          int        // srv_port; 0 when the format lacks it
	FQDN          string     // srv_fqdn; "" for "-" or when absent
	OpState       OpState    // srv_op_state
	AdminState    AdminState // srv_admin_state
	Weight        int        // srv_uweight: the weight now
	InitialWeight int        // srv_iweight: the configuration's weight
	// Fields holds every field of the row by its header name, as
	// HAProxy wrote it, for what the struct does not carry.
	Fields map[string]string
}

// ParseServersState parses the answer of "show servers state", or a
// server-state-file: the version line "1", a "# be_id be_name ..." header
// naming the fields, then one row of space-separated fields per server.
// Fields are found by their header name, so HAProxy may add or reorder
// fields; be_name, srv_name, srv_addr, srv_op_state, srv_admin_state
// and srv_uweight are required. A later header line replaces the earlier
// one; blank lines are skipped.
func ParseServersState(text string) ([]Server, error) {
	lines := strings.Split(text, "\n")
	first := strings.TrimSpace(lines[0])
	if first != "1" {
		return nil, fmt.Errorf("servers state: version line %q, want \"1\"", first)
	}
	var (
		header  []string
		servers []Server
	)
	for i, line := range lines[1:] {
		n := i + 2
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			header = strings.Fields(strings.TrimPrefix(line, "#"))
			for _, f := range []string{"be_name", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_uweight"} {
				if !slices.Contains(header, f) {
					return nil, fmt.Errorf("servers state line %d: header lacks %s", n, f)
				}
			}
			continue
		}
		if header == nil {
			return nil, fmt.Errorf("servers state line %d: a row before the header", n)
		}
		values := strings.Fields(line)
		if len(values) < len(header) {
			return nil, fmt.Errorf("servers state line %d: %d fields, the header names %d", n, len(values), len(header))
		}
		s, err := parseServer(header, values)
		if err != nil {
			return nil, fmt.Errorf("servers state line %d: %w", n, err)
		}
		servers = append(servers, s)
	}
	if header == nil {
		return nil, fmt.Errorf("servers state: no header line")
	}
	return servers, nil
}

func parseServer(header, values []string) (Server, error) {
	s := Server{Fields: make(map[string]string, len(header))}
	for i, name := range header {
		s.Fields[name] = values[i]
	}
	num := func(name string, optional bool) (int, error) {
		v, ok := s.Fields[name]
		if !ok && optional {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s %q: not a number", name, v)
		}
		return n, nil
	}
	var err error
	var op, admin int
	for _, f := range []struct {
		name     string
		optional bool
		dst      *int
	}{
		{"be_id", true, &s.BackendID},
		{"srv_id", true, &s.ID},
		{"srv_port", true, &s.Port},
		{"srv_op_state", false, &op},
		{"srv_admin_state", false, &admin},
		{"srv_uweight", false, &s.Weight},
		{"srv_iweight", true, &s.InitialWeight},
	} {
		if *f.dst, err = num(f.name, f.optional); err != nil {
			return Server{}, err
		}
	}
	s.OpState, s.AdminState = OpState(op), AdminState(admin)
	s.Backend, s.Name, s.Addr = s.Fields["be_name"], s.Fields["srv_name"], s.Fields["srv_addr"]
	if fqdn := s.Fields["srv_fqdn"]; fqdn != "-" {
		s.FQDN = fqdn
	}
	return s, nil
}

// MapEntry is one entry of a map, as "show map" lists it.
type MapEntry struct {
	ID    string // HAProxy's reference, "0x55d0c0e0": valid until the entry goes
	Key   string
	Value string // the rest of the line: a value may hold spaces
}

// ParseMap parses the answer of "show map MAP": one "0xID KEY VALUE" line
// per entry. Blank lines are skipped.
func ParseMap(text string) ([]MapEntry, error) {
	var entries []MapEntry
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		id, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(id, "0x") || len(id) < 3 {
			return nil, fmt.Errorf("map line %d: %q: not \"0xID KEY VALUE\"", i+1, line)
		}
		if _, err := strconv.ParseUint(id[2:], 16, 64); err != nil {
			return nil, fmt.Errorf("map line %d: id %q: not hexadecimal", i+1, id)
		}
		key, value, ok := strings.Cut(rest, " ")
		if !ok || key == "" {
			return nil, fmt.Errorf("map line %d: %q: not \"0xID KEY VALUE\"", i+1, line)
		}
		entries = append(entries, MapEntry{ID: id, Key: key, Value: value})
	}
	return entries, nil
}

// Info is the answer of "show info".
type Info struct {
	Name      string // "HAProxy"
	Version   string // "2.6.12-1+deb12u4"
	Pid       int
	UptimeSec int64
	// StartTimeSec is the process's start, in Unix seconds (absent
	// before HAProxy 2.5: then 0).
	StartTimeSec int64
	// Fields holds every "Key: value" line, by its key as HAProxy wrote
	// it ("Uptime_sec", "CurrConns", "Unstoppable Jobs", ...).
	Fields map[string]string
}

// RestartedSince reports whether the process that answered i is not the
// one that answered prev, or started again: a new Pid, or an uptime
// smaller than prev's. Runtime changes do not survive that, so a caller
// applies its state again.
func (i Info) RestartedSince(prev Info) bool {
	return i.Pid != prev.Pid || i.UptimeSec < prev.UptimeSec
}

// ParseInfo parses the answer of "show info": "Key: value" lines. Pid and
// Uptime_sec are required; blank lines are skipped.
func ParseInfo(text string) (Info, error) {
	info := Info{Fields: map[string]string{}}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || key == "" {
			return Info{}, fmt.Errorf("info line %d: %q: not \"Key: value\"", i+1, line)
		}
		info.Fields[key] = strings.TrimSpace(value)
	}
	num := func(key string, optional bool) (int64, error) {
		v, ok := info.Fields[key]
		if !ok {
			if optional {
				return 0, nil
			}
			return 0, fmt.Errorf("info: no %s", key)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("info: %s %q: not a number", key, v)
		}
		return n, nil
	}
	pid, err := num("Pid", false)
	if err != nil {
		return Info{}, err
	}
	if pid > 1<<31 {
		return Info{}, fmt.Errorf("info: Pid %d: out of range", pid)
	}
	info.Pid = int(pid)
	if info.UptimeSec, err = num("Uptime_sec", false); err != nil {
		return Info{}, err
	}
	if info.StartTimeSec, err = num("Start_time_sec", true); err != nil {
		return Info{}, err
	}
	info.Name, info.Version = info.Fields["Name"], info.Fields["Version"]
	return info, nil
}
