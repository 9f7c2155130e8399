package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/spillway-dev/spillway/internal/config"
)

// fileFlags is the command line of a subcommand that reads the spillway
// file: --config, --log-level, --log-format, and flags that each override one field of
// the file when given (bind, bindVar and the flags several subcommands
// share, below). load applies them over the file, at start and at every
// reload, so a flag given wins over the file. Declare every flag before
// parse.
type fileFlags struct {
	*flag.FlagSet
	config *string
	log    logFlags
	set    map[string]func(*config.File) // by flag name
}

// newFileFlags returns the command line of the subcommand name, with
// --config (configUsage says which sections it reads), --log-level and
// --log-format.
func newFileFlags(name, configUsage string, stderr io.Writer) *fileFlags {
	fs := newFlagSet(name, stderr)
	return &fileFlags{
		FlagSet: fs,
		config:  fs.String("config", "", configUsage),
		log:     addLogFlags(fs),
		set:     map[string]func(*config.File){},
	}
}

// parse parses args (parseFlags) and returns the logger --log-level and
// --log-format ask for, writing to stderr.
func (c *fileFlags) parse(args []string, stderr io.Writer) (*slog.Logger, error) {
	if err := parseFlags(c.FlagSet, args); err != nil {
		return nil, err
	}
	return c.log.logger(stderr)
}

// logFlags are --log-level and --log-format, which every subcommand that
// logs declares (addLogFlags).
type logFlags struct {
	level  *string
	format *logFormat
}

// addLogFlags declares --log-level and --log-format on fs.
func addLogFlags(fs *flag.FlagSet) logFlags {
	f := logFlags{level: fs.String("log-level", "info", "log `level`: debug, info, warn, error"), format: new(logFormat)}
	*f.format = logText
	fs.Var(f.format, "log-format", "log line `format`: text (key=value) or json (one JSON object a line)")
	return f
}

// logger returns the logger the flags ask for, writing to w.
func (f logFlags) logger(w io.Writer) (*slog.Logger, error) {
	return newLogger(w, *f.level, *f.format)
}

// logFormat is --log-format: text (slog's key=value lines, the default)
// or json (slog's JSON lines). Set refuses any other value, so a typo is
// a usage error naming the flag.
type logFormat string

const (
	logText logFormat = "text"
	logJSON logFormat = "json"
)

func (f *logFormat) String() string { return string(*f) }

func (f *logFormat) Set(s string) error {
	switch v := logFormat(s); v {
	case logText, logJSON:
		*f = v
		return nil
	}
	return fmt.Errorf("%q: want text or json", s)
}

// newLogger returns a logger writing lines of format at level and above
// to w.
func newLogger(w io.Writer, level string, format logFormat) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == logJSON {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// path is --config: the file's path, "" for none.
func (c *fileFlags) path() string { return *c.config }

// load loads the file named by --config onto def, with the flags given
// applied over it (loadFile). The caller validates.
func (c *fileFlags) load(def config.File) (config.File, error) {
	return loadFile(*c.config, def, func(f *config.File) {
		c.Visit(func(fl *flag.Flag) {
			if set := c.set[fl.Name]; set != nil {
				set(f)
			}
		})
	})
}

// onHangup is onHangup with reload, the reload of the file, when there is
// a --config file to reload; without one, SIGHUP is logged and ignored.
func (c *fileFlags) onHangup(logger *slog.Logger, reload func()) (stop func()) {
	if *c.config == "" {
		reload = nil
	}
	return onHangup(logger, "no --config file to reload", reload)
}

// bind declares the flag name (through declare: c.String, c.Int, ...,
// with the zero value as its default) that, when given, set stores into
// the file.
func bind[T any](c *fileFlags, declare func(name string, value T, usage string) *T, name, usage string, set func(f *config.File, v T)) {
	var zero T
	p := declare(name, zero, usage)
	c.set[name] = func(f *config.File) { set(f, *p) }
}

// bindVar declares the flag name for value that, when given, set stores
// into the file.
func bindVar(c *fileFlags, value flag.Value, name, usage string, set func(f *config.File)) {
	c.Var(value, name, usage)
	c.set[name] = set
}

// The flags several subcommands share, each with the same meaning
// wherever it is given; usage says it in the subcommand's terms.

// bindBackend declares --backend, login.backend.url. The health probe
// follows the backend named on the command line: login.backend.probe_url
// is derived from it again.
func bindBackend(c *fileFlags, usage string) {
	bind(c, c.String, "backend", usage, func(f *config.File, v string) {
		f.Login.Backend.URL = v
		f.Login.Backend.ProbeURL = ""
	})
}

// bindRegister declares --register, login.register.
func bindRegister(c *fileFlags, usage string) {
	bind(c, c.String, "register", usage, func(f *config.File, v string) { f.Login.Register = v })
}

// bindInstances declares --instances, fleet.size.
func bindInstances(c *fileFlags, usage string) {
	bind(c, c.Int, "instances", usage, func(f *config.File, v int) { f.Fleet.Size = v })
}

// bindLBListen declares --listen and --admin-listen, lb.listen and
// lb.admin_listen.
func bindLBListen(c *fileFlags, listenUsage, adminUsage string) {
	bind(c, c.String, "listen", listenUsage, func(f *config.File, v string) { f.LB.Listen = v })
	bind(c, c.String, "admin-listen", adminUsage, func(f *config.File, v string) { f.LB.AdminListen = v })
}

// bindTrustedProxies declares --trusted-proxies, a comma-separated list
// that set stores.
func bindTrustedProxies(c *fileFlags, usage string, set func(f *config.File, list []string)) {
	bind(c, c.String, "trusted-proxies", usage, func(f *config.File, v string) { set(f, splitList(v)) })
}

// bindTLS declares --tls-cert and --tls-key, the first certificate pair
// of the listener's tls: section that pair returns.
func bindTLS(c *fileFlags, pair func(f *config.File) (cert, key *string)) {
	bind(c, c.String, "tls-cert", "serve TLS with the certificate (chain) in PEM `file` (with --tls-key); reloaded on SIGHUP and on change",
		func(f *config.File, v string) { cert, _ := pair(f); *cert = v })
	bind(c, c.String, "tls-key", "the private key of --tls-cert, a PEM `file`",
		func(f *config.File, v string) { _, key := pair(f); *key = v })
}
