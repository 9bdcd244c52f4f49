package console

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/csvimport"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/ratelimit"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/third_party/web"
)

// Options configure a Console.
type Options struct {
	// Registry authenticates tokens and answers the identity pages; required.
	Registry *registry.Registry
	// Audit, when set, records sign-ins and sign-outs.
	Audit *audit.Log
	// Presence, when set, gives the devices online and offline.
	Presence *presence.Service
	// Gatherer, when set, is the node's Prometheus registry, whose
	// wanwu_* counters give the messages accepted and rejected per second.
	Gatherer prometheus.Gatherer
	// Metrics is where the console's own counters register (none when nil).
	Metrics prometheus.Registerer
	Logger  *slog.Logger
	// Role is "hub" or "edge"; Code is what the header names the node by:
	// an edge's object code, the hub's deployment id. At an edge, the
	// devices whose presence the node sees are those behind Code; at the
	// hub, those behind no edge.
	Role, Code string
	// Version is the build's version, shown in the footer.
	Version string
	// SessionLifetime is how long a sign-in lasts (default 8 h).
	SessionLifetime time.Duration
	// SecureCookies marks the cookies Secure on plain HTTP too: for a node
	// behind a proxy that terminates TLS. Over TLS they are Secure anyway.
	SecureCookies bool
	// MaxSessions bounds the sessions held at once (default 10000); past
	// it, the session closest to its end is dropped.
	MaxSessions int
	// SignInFailures limits failed sign-ins per source address (default
	// one per 10 s, burst 10); over it the address is answered 429.
	SignInFailures      rate.Limit
	SignInFailuresBurst int
	// RateEvery is how often Run samples the message counters (default
	// 10 s); RateKeep how many samples the chart shows (default 60).
	RateEvery time.Duration
	RateKeep  int
	// LiveEvery is how often an object page's live stream reads the
	// latest values (default 1 s); MaxLiveStreams bounds the live streams
	// open at once on the node (default 256; 8 per session).
	LiveEvery      time.Duration
	MaxLiveStreams int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// ImportMaxRows is the row limit of one bulk import that the node's
	// API applies (api.Options.ImportMaxRows; default csvimport.MaxRows);
	// the import page says it and keeps a whole file to it.
	ImportMaxRows int
}

// Defaults for Options.
const (
	DefaultSessionLifetime = 8 * time.Hour
	DefaultMaxSessions     = 10000
	DefaultRateEvery       = 10 * time.Second
	DefaultRateKeep        = 60
)

// Console serves the web console; it is an http.Handler for every path the
// node's API does not serve. Run samples the message counters and sweeps
// expired sessions; the live streams end when Run returns (or at Close).
type Console struct {
	o        Options
	log      *slog.Logger
	mux      *http.ServeMux
	sessions *sessions
	failures *ratelimit.Keyed[string]
	cop      *http.CrossOriginProtection
	rates    *rates // nil without a Gatherer
	pages    map[string]*template.Template
	static   map[string]asset
	signins  *prometheus.CounterVec
	api      apiHandler
	menu     []menuItem
	glance   atomic.Pointer[func(context.Context) Glance]
	streams  *liveStreams
	// ctx ends when Run returns or Close is called: the live streams
	// select on it, so that they end when the console shuts down.
	ctx  context.Context
	stop context.CancelFunc
}

//go:embed templates static
var files embed.FS

// asset is a static file with its ETag, and its gzip encoding where that
// saves a tenth or more.
type asset struct {
	body        []byte
	contentType string
	etag        string
	gz          []byte // nil when not worth it
	gzETag      string
}

// newAsset computes an asset's ETags and gzip encoding.
func newAsset(b []byte, contentType string) (asset, error) {
	sum := sha256.Sum256(b)
	tag := hex.EncodeToString(sum[:12])
	a := asset{body: b, contentType: contentType, etag: `"` + tag + `"`}
	var z bytes.Buffer
	zw, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if err != nil {
		return asset{}, err
	}
	if _, err := zw.Write(b); err != nil {
		return asset{}, err
	}
	if err := zw.Close(); err != nil {
		return asset{}, err
	}
	if z.Len() <= len(b)*9/10 {
		a.gz, a.gzETag = z.Bytes(), `"`+tag+`-gz"`
	}
	return a, nil
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip
// (RFC 9110 §12.5.3: a q-value of 0 refuses it).
func acceptsGzip(r *http.Request) bool {
	for _, h := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(h, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if c := strings.ToLower(strings.TrimSpace(coding)); c != "gzip" && c != "x-gzip" {
				continue
			}
			for _, p := range strings.Split(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					return err == nil && q > 0
				}
			}
			return true
		}
	}
	return false
}

// New checks the options and returns the console.
func New(opts Options) (*Console, error) {
	if opts.Registry == nil {
		return nil, errors.New("console: Options.Registry is required")
	}
	if opts.Role == "" {
		opts.Role = "hub"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionLifetime <= 0 {
		opts.SessionLifetime = DefaultSessionLifetime
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.SignInFailures == 0 {
		opts.SignInFailures, opts.SignInFailuresBurst = 0.1, 10
	}
	if opts.RateEvery <= 0 {
		opts.RateEvery = DefaultRateEvery
	}
	if opts.ImportMaxRows <= 0 {
		opts.ImportMaxRows = csvimport.MaxRows
	}
	if opts.RateKeep < 2 {
		opts.RateKeep = DefaultRateKeep
	}
	if opts.LiveEvery <= 0 {
		opts.LiveEvery = DefaultLiveEvery
	}
	if opts.MaxLiveStreams <= 0 {
		opts.MaxLiveStreams = DefaultMaxLiveStreams
	}
	c := &Console{
		o:        opts,
		log:      opts.Logger,
		sessions: newSessions(opts.MaxSessions),
		failures: ratelimit.New[string](opts.SignInFailures, opts.SignInFailuresBurst),
		cop:      http.NewCrossOriginProtection(),
		signins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_console_signins_total",
			Help: "Console sign-ins by result (ok, refused: the token was not accepted, limited: too many failures from the address).",
		}, []string{"result"}),
		streams: newLiveStreams(opts.MaxLiveStreams),
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	if opts.Gatherer != nil {
		c.rates = &rates{g: opts.Gatherer, keep: opts.RateKeep}
	}
	if opts.Metrics != nil {
		for _, m := range []prometheus.Collector{c.signins, c.streams.gauge} {
			if err := opts.Metrics.Register(m); err != nil {
				return nil, fmt.Errorf("console: metrics: %w", err)
			}
		}
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if c.static, err = loadAssets(); err != nil {
		return nil, err
	}
	c.menu = []menuItem{{"fleet", "Fleet", "/"}}
	if c.o.Role == "hub" {
		c.menu = append(c.menu, menuItem{"edges", "Edges", "/edges"})
	}
	c.menu = append(c.menu, menuItem{"loops", "Loops", "/loops"}, menuItem{"approvals", "Approvals", "/approvals"},
		menuItem{"alarms", "Alarms", "/alarms"}, menuItem{"models", "Models", "/models"})
	if c.o.Role == "hub" {
		c.menu = append(c.menu, menuItem{"ml", "ML models", "/ml"}, menuItem{"datasets", "Datasets", "/datasets"})
	}
	c.menu = append(c.menu, menuItem{"audit", "Audit", "/audit"})
	c.mux = http.NewServeMux()
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	c.mux.HandleFunc("GET /static/", c.serveStatic)
	c.mux.HandleFunc("GET /signin", c.signInPage)
	c.mux.HandleFunc("POST /signin", c.signIn)
	c.mux.HandleFunc("POST /signout", c.signOut)
	c.mux.HandleFunc("GET /{$}", c.page(c.fleet))
	c.mux.HandleFunc("GET /fleet/summary", c.page(c.fleetSummary))
	c.mux.HandleFunc("GET /search", c.page(c.search))
	c.mux.HandleFunc("GET /objects/{code}", c.page(c.object))
	c.mux.HandleFunc("GET /demo", c.page(c.glancePage))
	c.deviceRoutes()
	c.mlRoutes()
	c.mux.HandleFunc("GET /objects/{code}/telemetry", c.page(c.objectTelemetry))
	c.mux.HandleFunc("GET /objects/{code}/live", c.page(c.live))
	c.mux.HandleFunc("GET /audit", c.page(c.auditList))
	c.mux.HandleFunc("GET /audit/{index}", c.page(c.auditEntry))
	c.mux.HandleFunc("GET /models", c.page(c.models))
	c.mux.HandleFunc("GET /models/{id}", c.page(c.modelPage))
	c.mux.HandleFunc("GET /models/{id}/{version}", c.page(c.modelPage))
	c.mux.HandleFunc("GET /models/{id}/{version}/td", c.page(c.modelTD))
	c.mux.HandleFunc("POST /models/{id}/{version}/deprecate", c.page(c.modelDeprecate))
	if c.o.Role == "hub" {
		// Edges forward to the hub, and objects are registered there (an
		// edge's registry is the hub's replica).
		c.mux.HandleFunc("GET /edges", c.page(c.edges))
		c.mux.HandleFunc("GET /edges/{code}", c.page(c.edge))
		c.mux.HandleFunc("GET /objects/import", c.page(c.importPage))
		c.mux.HandleFunc("POST /objects/import", withBodyLimit(maxImportBody, c.page(c.importPost)))
	}
	c.loopRoutes()
	c.mux.HandleFunc("/", c.notFound)
}

// ServeHTTP serves the console; every response carries the security
// headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	c.mux.ServeHTTP(w, r)
}

// Run samples the message counters every Options.RateEvery and sweeps the
// expired sessions, until ctx is done. Without Run the console still works:
// expired sessions end when they are next used, and the fleet page says the
// rates are not measured. When Run returns, the console's live streams
// end (as at Close).
func (c *Console) Run(ctx context.Context) {
	defer c.stop()
	t := time.NewTicker(c.o.RateEvery)
	defer t.Stop()
	c.tick()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.tick()
		}
	}
}

// Close ends the console's live streams (server-sent events), as Run's
// return does. A node calls it before shutting its HTTP servers down, whose
// Shutdown waits for the requests in flight, a stream among them. The
// console's other pages go on working.
func (c *Console) Close() { c.stop() }

func (c *Console) tick() {
	now := c.o.Now()
	c.sessions.sweep(now)
	if c.rates == nil {
		return
	}
	if err := c.rates.take(now); err != nil {
		c.log.Warn("console: message rates not sampled", "err", err)
	}
}

// parsePages parses each page's template with the layout and the parts
// (templates/part_*.html: sections that pages include and fragment routes
// render alone).
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"utc":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"utcText": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"join":    strings.Join,
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"rate":    func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"count":   func(v float64) string { return fmt.Sprintf("%.0f", v) },
		"seconds": func(d time.Duration) string { return fmt.Sprintf("%.0f", d.Seconds()) },
		"mul100":  func(v float64) float64 { return 100 * v },
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/parts.html", "templates/part_*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	names, err := fs.Glob(files, "templates/page_*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		t, err := template.Must(layout.Clone()).ParseFS(files, n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		out[strings.TrimSuffix(strings.TrimPrefix(path.Base(n), "page_"), ".html")] = t
	}
	return out, nil
}

// loadAssets reads the console's own files and the vendored ones, with
// their ETags (the files are embedded, so they have no modification time)
// and gzip encodings, once for every console of the process (a hub and its
// edges in one test or demo); the map is only read after.
var loadAssets = sync.OnceValues(readAssets)

func readAssets() (map[string]asset, error) {
	out := map[string]asset{}
	add := func(fsys fs.FS, root, prefix string) error {
		return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || path.Base(p) == "LICENSE" {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			ct := "application/octet-stream"
			switch path.Ext(p) {
			case ".js":
				ct = "text/javascript; charset=utf-8"
			case ".css":
				ct = "text/css; charset=utf-8"
			}
			a, err := newAsset(b, ct)
			if err != nil {
				return err
			}
			out[prefix+strings.TrimPrefix(p, root+"/")] = a
			return nil
		})
	}
	if err := add(files, "static", "/static/"); err != nil {
		return nil, fmt.Errorf("console: static files: %w", err)
	}
	if err := add(web.FS, ".", "/static/vendor/"); err != nil {
		return nil, fmt.Errorf("console: vendored files: %w", err)
	}
	return out, nil
}

// serveStatic serves an embedded file, gzip-encoded to a browser that
// takes it; browsers revalidate it by its ETag (each encoding has its
// own). Only these files are compressed: pages carry the session's CSRF
// token beside what the request names, which compression would let an
// observer of the sizes guess (BREACH).
func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := c.static[r.URL.Path]
	if !ok {
		c.notFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	body, etag := a.body, a.etag
	if a.gz != nil {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body, etag = a.gz, a.gzETag
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// redirectToSignIn sends the browser to sign in, to come back to the page
// it was on. An htmx request is answered with HX-Redirect (htmx then loads
// the sign-in page as a whole), naming the page htmx says it is on.
func (c *Console) redirectToSignIn(w http.ResponseWriter, r *http.Request, reason string) {
	next := r.URL.RequestURI()
	if r.Header.Get("HX-Request") == "true" {
		next = "/"
		if u, err := url.Parse(r.Header.Get("HX-Current-URL")); err == nil && u.Host == r.Host {
			next = u.RequestURI()
		}
	} else if unsafe(r.Method) {
		next = "/"
	}
	q := url.Values{}
	if next = localPath(next); next != "/" {
		q.Set("next", next)
	}
	if reason != "" {
		q.Set("reason", reason)
	}
	target := "/signin"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("HX-Redirect", target)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}
