package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.yaml.in/yaml/v3"

	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/strictyaml"
)

// FileConfig configures a File.
type FileConfig struct {
	// Path is the instance file's path; absolute in a URL.
	Path string
	// Interval is how often the file is re-read even without a change
	// event. Default DefaultFileInterval.
	Interval time.Duration
	// Log receives the source's events. Nil: discarded.
	Log *slog.Logger
}

// File is a Discovery that reads its instances from a YAML file, in the
// shape of the configuration's `instances:` list:
//
//	instances:
//	  - service: 10.0.0.1:8000
//	    health: 10.0.0.1:9000
//	  - service: 10.0.0.2:8000
//	    health: 10.0.0.2:9000
//
// The file is read strictly (an unknown field, a duplicate key, a second
// document is an error with its line) and checked whole (every address,
// no service address twice, at most lb.MaxInstances). `instances: []` is
// an empty set; an empty file, or one without `instances:`, is an error
// (an in-place write caught half done looks like that).
//
// Watch re-reads the file after every change in its directory (fsnotify,
// so that a write to a temporary file and a rename over this one is seen,
// as are Kubernetes' ConfigMap symlink swaps), 100ms after the last event
// of a burst, and every Interval in any case. Writers should write a
// temporary file and rename it; a file being written in place may be read
// half done, and is then refused only if it does not parse.
type File struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	initial  []lb.Instance // read by NewFile: the last good set a Watch starts from
}

var _ lb.Discovery = (*File)(nil)

// fileSettle is how long Watch waits after a change event for the burst
// of events of one write to end before reading.
const fileSettle = 100 * time.Millisecond

// NewFile validates c and reads the file once: a missing, unreadable or
// invalid file is an error.
func NewFile(c FileConfig) (*File, error) {
	if c.Path == "" {
		return nil, errors.New("discovery file: no path given")
	}
	if c.Interval == 0 {
		c.Interval = DefaultFileInterval
	}
	if err := field.Positive("interval", c.Interval); err != nil {
		return nil, fmt.Errorf("discovery file %s: %w", c.Path, err)
	}
	f := &File{path: filepath.Clean(c.Path), interval: c.Interval, log: orDiscard(c.Log).With("discovery", "file", "path", c.Path)}
	insts, err := f.read()
	if err != nil {
		return nil, err
	}
	f.initial = insts
	return f, nil
}

// Instances reads the file and returns its set, or why it is refused.
func (f *File) Instances() ([]lb.Instance, error) { return f.read() }

func (f *File) read() ([]lb.Instance, error) {
	data, err := strictyaml.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("discovery file: %w", err)
	}
	insts, err := ParseInstances(data)
	if err != nil {
		return nil, fmt.Errorf("discovery file %s: %w", f.path, err)
	}
	return insts, nil
}

// instanceFile is the instance file's schema.
type instanceFile struct {
	// Instances is the complete set. Required: `instances: []` for none.
	Instances []lb.Instance `yaml:"instances"`
}

// ParseInstances reads an instance file's content (File's format): the
// set it lists, or every reason it is refused, each with its line.
func ParseInstances(data []byte) ([]lb.Instance, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file (being written?); `instances: []` lists none")
	}
	var doc instanceFile
	if err := strictyaml.Decode(data, &doc); err != nil {
		return nil, err
	}
	if doc.Instances == nil {
		return nil, errors.New("instances: required (`instances: []` lists none)")
	}
	if len(doc.Instances) > lb.MaxInstances {
		return nil, field.New("instances", len(doc.Instances), fmt.Sprintf("more than %d instances", lb.MaxInstances))
	}
	lines := itemLines(data)
	var errs []error
	seen := make(map[string]int, len(doc.Instances))
	for i, in := range doc.Instances {
		p := "instances[" + strconv.Itoa(i) + "]"
		err := field.Prefix(p, lb.CheckInstance(in))
		if j, dup := seen[in.Service]; dup && err == nil {
			err = field.New(p+".service", in.Service, fmt.Sprintf("duplicate of instances[%d].service", j))
		}
		seen[in.Service] = i
		if err == nil {
			continue
		}
		for _, e := range field.Unjoin(err) {
			if i < len(lines) {
				e = fmt.Errorf("line %d: %w", lines[i], e)
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return doc.Instances, nil
}

// itemLines returns the line of each item of the document's instances
// list (nil if it has none): validation errors name them.
func itemLines(data []byte) []int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "instances" {
			var lines []int
			for _, it := range m.Content[i+1].Content {
				lines = append(lines, it.Line)
			}
			return lines
		}
	}
	return nil
}

// Watch implements lb.Discovery: the file's set at once (or NewFile's if
// the file is now refused), then each changed set, until ctx is done.
func (f *File) Watch(ctx context.Context, update func([]lb.Instance)) error {
	p := &publisher{update: update, log: f.log}
	// Watch the directory before the first read, so that no change
	// between the two is missed.
	dir := filepath.Dir(f.path)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		f.log.Warn("cannot watch the file; changes are seen at the periodic re-read only", "interval", f.interval, "error", err)
	} else {
		defer w.Close()
		if err := w.Add(dir); err != nil {
			f.log.Warn("cannot watch the file's directory; retrying at each re-read", "dir", dir, "error", err)
		}
	}

	if insts, err := f.read(); err != nil {
		p.set(f.initial)
		p.fail(err)
	} else {
		p.set(insts)
	}
	reload := func() {
		if insts, err := f.read(); err != nil {
			p.fail(err)
		} else {
			p.set(insts)
		}
	}

	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if w != nil {
		events, watchErrs = w.Events, w.Errors
	}
	settle := time.NewTimer(fileSettle)
	settle.Stop()
	defer settle.Stop()
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			settle.Reset(fileSettle)
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			f.log.Warn("file watch error; the periodic re-read goes on", "error", err)
		case <-settle.C:
			reload()
		case <-tick.C:
			// A removed and recreated directory drops the watch; take
			// it up again.
			if w != nil && len(w.WatchList()) == 0 {
				if err := w.Add(dir); err == nil {
					f.log.Info("watching the file's directory again", "dir", dir)
				}
			}
			reload()
		}
	}
}
