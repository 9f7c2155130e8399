package health

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Response bodies and header values, built once. The header slices are
// assigned straight into response headers to keep /livez allocation-free;
// their capacity equals their length, so a later Header().Add copies rather
// than writing into them. Nothing may modify them in place.
var (
	bodyOK         = []byte("ok")
	bodyDeepFailed = []byte("deep check failed\n")
	phaseBodies    = [...][]byte{
		PhaseStarting: []byte("starting\n"),
		PhaseWarming:  []byte("warming\n"),
		PhaseReady:    []byte("ok"),
		PhaseDraining: []byte("draining\n"),
	}

	hdrTextPlain  = []string{"text/plain; charset=utf-8"}
	hdrJSON       = []string{ContentTypeJSON}
	hdrHealthJSON = []string{ContentTypeHealthJSON}
	hdrVaryAccept = []string{"Accept"}
	hdrNoStore    = []string{"no-store"}
	hdrNoSniff    = []string{"nosniff"}
	hdrAllow      = []string{"GET, HEAD"}
)

// handler routes the health endpoints. It matches exact paths (use
// http.StripPrefix to mount it under a prefix) and checks the method itself
// so that routing allocates nothing.
type handler struct {
	s       *Server
	metrics http.Handler // nil: /metrics is 404
}

var _ http.Handler = (*handler)(nil)

func newHandler(s *Server, g prometheus.Gatherer) *handler {
	h := &handler{s: s}
	if g != nil {
		h.metrics = promhttp.HandlerFor(g, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
			// Scrapes must not pile up on the health port.
			MaxRequestsInFlight: 2,
		})
	}
	return h
}

// Handler returns the health endpoints as an http.Handler: /livez, /readyz,
// /health and /metrics, on exact paths; anything else is 404. Serve uses it
// on its own port. Mounting it on the service's own server, behind its
// admission control, is the 2018 "shared port" configuration: under load
// the health answers queue behind business requests and the instance looks
// dead. Use that only to reproduce the incident.
func (s *Server) Handler() http.Handler { return s.handler }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func(*handler, http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case "/livez":
		serve = (*handler).livez
	case "/readyz":
		serve = (*handler).readyz
	case "/health":
		serve = (*handler).health
	case "/metrics":
		if h.metrics == nil {
			http.NotFound(w, r)
			return
		}
		serve = (*handler).metricsz
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = hdrAllow
		writeText(w, http.StatusMethodNotAllowed, []byte("method not allowed\n"))
		return
	}
	serve(h, w, r)
}

func (h *handler) livez(w http.ResponseWriter, r *http.Request) {
	s := h.s
	var failBody []byte
	if p := s.checks.Load(); p != nil && len(*p) > 0 {
		if failed := s.runLivenessChecks(r.Context(), *p); failed != nil {
			failBody = failed.failBody
		}
	}
	s.answerProbe(w, r, failBody, s.metrics.livezOK, s.metrics.livezFail)
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	s := h.s
	var failBody []byte
	if p := s.Phase(); p != PhaseReady {
		failBody = phaseBodies[p]
	} else if g := s.closedGate(); g != nil {
		failBody = g.failBody
	}
	s.answerProbe(w, r, failBody, s.metrics.readyzOK, s.metrics.readyzFail)
}

// answerProbe answers /livez or /readyz: 503 with failBody when the
// endpoint's own checks failed (failBody is not nil), else 503 when
// Options.Deep is set and fails, else 200 "ok"; ok or fail counts it.
func (s *Server) answerProbe(w http.ResponseWriter, r *http.Request, failBody []byte, ok, fail prometheus.Counter) {
	if failBody == nil && s.deep != nil && !s.deepOK(r.Context()) {
		failBody = bodyDeepFailed
	}
	if failBody != nil {
		fail.Inc()
		writeText(w, http.StatusServiceUnavailable, failBody)
		return
	}
	ok.Inc()
	writeText(w, http.StatusOK, bodyOK)
}

// health serves the Report. It answers 200 whatever the report says: the
// load balancer acts on its content, not on its status. With ?version=
// and ?wait= it is a long poll (watch.go). An Accept that prefers
// application/health+json gets the IETF document (MarshalIETF), any
// other the spillway JSON.
func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	s := h.s
	wait, version, err := pollParams(r.URL.RawQuery)
	if err != nil {
		writeText(w, http.StatusBadRequest, []byte(err.Error()+"\n"))
		return
	}
	rep := s.Report()
	if wait > 0 && rep.Version == version {
		rep = s.awaitChange(r.Context(), w, version, wait)
	}
	ctype := hdrJSON
	var body []byte
	if accept := r.Header.Get("Accept"); accept != "" && wantsIETF(accept) {
		ctype = hdrHealthJSON
		body, err = MarshalIETF(rep)
	} else {
		body, err = json.Marshal(rep)
	}
	if err != nil {
		// Only a Dependency.Since outside years 0-9999 gets here.
		s.log.Error("health: encode report", "err", err)
		writeText(w, http.StatusInternalServerError, []byte("cannot encode report\n"))
		return
	}
	s.metrics.health.Inc()
	hd := w.Header()
	hd["Content-Type"] = ctype
	hd["Vary"] = hdrVaryAccept
	hd["Cache-Control"] = hdrNoStore
	hd["X-Content-Type-Options"] = hdrNoSniff
	w.WriteHeader(http.StatusOK)
	w.Write(append(body, '\n'))
}

func (h *handler) metricsz(w http.ResponseWriter, r *http.Request) {
	h.metrics.ServeHTTP(w, r)
}

func writeText(w http.ResponseWriter, code int, body []byte) {
	hd := w.Header()
	hd["Content-Type"] = hdrTextPlain
	hd["Cache-Control"] = hdrNoStore
	hd["X-Content-Type-Options"] = hdrNoSniff
	w.WriteHeader(code)
	w.Write(body)
}
