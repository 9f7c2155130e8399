package main

// This file is the third front door, "controller" (issue 13): a Debian
// HAProxy on the configuration `spillway controller --print-haproxy-config`
// prints, driven by `spillway controller`. Its trials add notes from the
// controller's own log: how long HAProxy's map took to follow the
// controller's shedding decision, and every server it took out.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/haproxy"
)

const doorController = "controller"

// startControllerDoor writes HAProxy's configuration and share map into a
// short directory (a unix socket path is at most 107 bytes), checks and
// starts HAProxy, then the controller with its admin API on admin. It
// returns the processes started, HAProxy first, and the directory, which
// the caller removes after stopping them.
func (b *bench) startControllerDoor(ctx context.Context, front, admin string, instances []instance, logPath func(string) string) ([]*proc, string, func(context.Context) bool, error) {
	dir, err := os.MkdirTemp("", "racebench-ctl")
	if err != nil {
		return nil, "", nil, err
	}
	socket, mapFile, cfg := filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "routes.map"), filepath.Join(dir, "haproxy.cfg")
	common := []string{"--haproxy-socket", socket, "--haproxy-map", mapFile}
	for _, in := range instances {
		common = append(common, "--instance", in.Service+"="+in.Health)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	text, err := exec.CommandContext(pctx, b.spillway, append([]string{"controller", "--print-haproxy-config", "--listen", front}, common...)...).Output()
	if err != nil {
		return nil, dir, nil, fmt.Errorf("spillway controller --print-haproxy-config: %w", err)
	}
	// The share map starts empty: every route admits all.
	if err := os.WriteFile(mapFile, nil, 0o644); err != nil {
		return nil, dir, nil, err
	}
	if err := os.WriteFile(cfg, text, 0o644); err != nil {
		return nil, dir, nil, err
	}
	if err := checkHAProxy(ctx, b.haproxy, cfg); err != nil {
		return nil, dir, nil, err
	}
	hap, err := startProc(b.sp, "haproxy", logPath("haproxy"), nil, b.haproxy, "-db", "-f", cfg)
	if err != nil {
		return nil, dir, nil, err
	}
	ctl, err := startProc(b.sp, "controller", logPath("controller"), []string{"SPILLWAY_ADMIN_TOKEN=" + b.token}, b.spillway,
		append([]string{"controller", "--admin-listen", admin}, common...)...)
	if err != nil {
		return []*proc{hap}, dir, nil, err
	}
	rt, err := haproxy.NewRuntime(socket)
	if err != nil {
		return []*proc{hap, ctl}, dir, nil, err
	}
	return []*proc{hap, ctl}, dir, mapShedding(rt, mapFile), nil
}

var (
	logTime   = regexp.MustCompile(`^time=(\S+) `)
	shedStart = regexp.MustCompile(`msg="shedding: answering 503`)
	// A route's value set to 0, or the map filled with one at 0.
	mapToZero = regexp.MustCompile(`msg="haproxy change" kind=map (key=\S+ from=\d+ to=0$|map=\S+ from=\S+ to="?[^"]*=0\b)`)
	outOfRot  = regexp.MustCompile(`msg="haproxy change" kind=state server=(\S+) from=\S+ to=(maint|drain)`)
)

// controllerNotes reads the controller's log: the delay between its
// shedding decision (its checks saw the instances' reports) and HAProxy's
// map at 0, and every server it took out of rotation (a dependency
// outage must take none).
func controllerNotes(logPath string) []string {
	f, err := os.Open(logPath)
	if err != nil {
		return []string{fmt.Sprintf("controller log: %v", err)}
	}
	defer f.Close()
	var (
		notes   []string
		decided time.Time
		out     []string
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := logTime.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		switch {
		case shedStart.MatchString(line) && decided.IsZero():
			decided = at
		case mapToZero.MatchString(line) && !decided.IsZero():
			notes = append(notes, fmt.Sprintf("controller: HAProxy's map at 0 %v after the shedding decision", at.Sub(decided).Round(100*time.Microsecond)))
			decided = time.Time{}
		}
		if o := outOfRot.FindStringSubmatch(line); o != nil {
			out = append(out, o[1]+" "+o[2])
		}
	}
	if len(out) == 0 {
		notes = append(notes, "controller: no server taken out of rotation")
	} else {
		notes = append(notes, fmt.Sprintf("controller: servers taken out of rotation: %s", strings.Join(out, ", ")))
	}
	return notes
}
