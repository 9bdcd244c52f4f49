package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests drive a real headless Chromium (Debian's chromium,
// through chromedp) against `wanwu demo`, as a new user would: they open
// the sign-in link the demo prints and operate the plant and city from the
// console. They skip, saying why, where no Chromium is installed, so that
// `go test ./...` passes with Go alone; .ci/run installs Chromium and sets
// WANWU_BROWSER_TESTS=require, under which a skip is a failure.
//
// Screenshots of the main pages go to $WANWU_SCREENSHOTS when set (kept),
// otherwise to a temporary directory; the test logs where.

// chromium returns the browser's path, or skips (fails under
// WANWU_BROWSER_TESTS=require).
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests run a demo and a browser; not in -short")
	}
	for _, name := range []string{os.Getenv("WANWU_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (install Debian's chromium package, or set WANWU_CHROMIUM to a Chrome binary): browser tests skipped"
	if os.Getenv("WANWU_BROWSER_TESTS") == "require" {
		t.Fatal(msg + ", but WANWU_BROWSER_TESTS=require")
	}
	t.Skip(msg)
	return ""
}

// lockedBuffer is an io.Writer the demo prints to while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runningDemo is `wanwu demo` run in process for a browser test.
type runningDemo struct {
	signIn string // the sign-in link the demo printed
	base   string // the console's URL
	out    *lockedBuffer
}

var signInLinkRE = regexp.MustCompile(`(http://[^\s/]+)(/signin\?next=/demo#token=wwt_[a-z0-9]+)`)

// startDemo runs the demo with extra flags until the test ends, and waits
// for it to print its sign-in link.
func startDemo(t *testing.T, extra ...string) *runningDemo {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	d := &runningDemo{out: &lockedBuffer{}}
	errb := &lockedBuffer{}
	args := append([]string{"demo", "--duration", "15m", "--data-dir", filepath.Join(dir, "data"),
		"--http.listen", "127.0.0.1:0", "--http.tls-listen", "127.0.0.1:0", "--mqtt.listen", "", "--mqtt.tls-listen", "127.0.0.1:0", "--coap.dtls-listen", "127.0.0.1:0"}, extra...)
	done := make(chan int, 1)
	go func() { done <- mainContext(ctx, args, d.out, errb) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("demo: exit %d\n%s", code, errb.String())
			}
		case <-time.After(90 * time.Second):
			t.Error("the demo did not stop within 90 s")
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if m := signInLinkRE.FindStringSubmatch(d.out.String()); m != nil {
			d.base, d.signIn = m[1], m[1]+m[2]
			return d
		}
		select {
		case code := <-done:
			t.Fatalf("demo ended (exit %d) before printing its sign-in link:\n%s\n%s", code, d.out.String(), errb.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("no sign-in link from the demo within 2 minutes:\n%s", d.out.String())
	return nil
}

// browser is a headless Chromium tab for a test, with a place for
// screenshots.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newBrowser(t *testing.T, exe string, width, height int) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(width, height), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	shots := os.Getenv("WANWU_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, shots: shots}
}

// run runs actions with a deadline; what failed is said with the page's
// address and visible text.
func (b *browser) run(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

// value runs one action that returns a value.
func value[T any](b *browser, what string, timeout time.Duration, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(what, err)
	}
	return v
}

// fail ends the test with the page's address and visible text.
func (b *browser) fail(what string, err error) {
	b.t.Helper()
	lctx, lcancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer lcancel()
	loc, _ := chromedp.Run(lctx, chromedp.Location())
	body, _ := chromedp.Run(lctx, chromedp.Text(chromedp.CSS("body")))
	if len(body) > 3000 {
		body = body[:3000] + "…"
	}
	b.t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, body)
}

// shot saves a full-page screenshot as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	png := value(b, "screenshot "+name, 30*time.Second, chromedp.FullScreenshot(100))
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// view saves what the window shows (not the whole page) as name.png: the
// screenshots of docs/CONSOLE.md.
func (b *browser) view(name string) {
	b.t.Helper()
	png := value(b, "screenshot "+name, 30*time.Second, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// waitText waits until the element's text matches re.
func waitText(sel string, re *regexp.Regexp) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var last string
		for {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)(qctx, t)
			cancel()
			if err == nil {
				if re.MatchString(s) {
					return nil
				}
				last = s
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s never matched %s; last: %q", sel, re, last)
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
}

// TestConsoleInBrowser: a new user opens the sign-in link `wanwu demo`
// prints and operates the plant and the city from the console: the demo's
// page, a device found by its code, a live value changing, a command a
// simulated spindle carries out, a chiller's desired setpoint, a loop's
// action approved, an alarm acknowledged and an audit entry verified in
// the browser's own code. The demo runs with --no-operator, so that what
// waits for a person waits for the test.
func TestConsoleInBrowser(t *testing.T) {
	exe := chromium(t)
	d := startDemo(t, "--no-operator", "--devices", "80", "--learn-at", "40s")
	b := newBrowser(t, exe, 1280, 900)

	b.run("open the sign-in link", 60*time.Second,
		chromedp.Navigate(d.signIn),
		waitText("main h1", regexp.MustCompile(`wanwu demo`)),
		waitText("#demo-status", regexp.MustCompile(`devices online`)))
	if loc := value(b, "the address bar", 10*time.Second, chromedp.Location()); strings.Contains(loc, "token") {
		t.Errorf("the token stays in the address bar: %s", loc)
	}
	b.shot("demo")
	b.view("view-demo")

	// Find the first spindle by its code, from the fleet's search box.
	cnc := value(b, "the demo's spindle", 10*time.Second, chromedp.Text(chromedp.CSS("ul.looklist li a")))
	b.run("find the spindle by its code", 60*time.Second,
		chromedp.Navigate(d.base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#summary")),
		chromedp.SendKeys(chromedp.CSS("#q"), cnc),
		chromedp.Submit(chromedp.CSS("#q")),
		waitText("main h1", regexp.MustCompile(regexp.QuoteMeta(cnc))))

	// Its values change on the page while it is open (server-sent events).
	const times = `Array.from(document.querySelectorAll("table.latest td[data-time]")).map(e => e.textContent).join("|")`
	b.run("the live stream opens", 60*time.Second, waitText("[data-live-state]", regexp.MustCompile(`^live`)))
	before := value(b, "the values' times", 10*time.Second, chromedp.Evaluate[string](times))
	b.run("a live value changes", 90*time.Second, waitJS(times+` !== `+jsString(before)))
	b.shot("device")

	// A command from the action's form, carried out by the simulated
	// spindle (behind the edge: down the edge's link and back).
	b.run("send setFeedRate", 60*time.Second,
		chromedp.SetValue(chromedp.CSS("#a-setFeedRate-feedRate"), "80"),
		chromedp.Click(chromedp.CSS(`form[action$="/commands"] button[type="submit"]`)),
		waitText("#command-list", regexp.MustCompile(`setFeedRate`)))
	b.run("the spindle carries it out", 120*time.Second, waitText("#command-list tbody tr", regexp.MustCompile(`succeeded`)))
	b.shot("device-command")
	b.run("the last 15 minutes", 60*time.Second,
		chromedp.Navigate(d.base+"/objects/"+cnc+"?range=15m"),
		waitText("[data-live-state]", regexp.MustCompile(`^live`)),
		chromedp.Sleep(3*time.Second),
		waitJS(`(document.getElementById("telemetry").scrollIntoView({block: "start"}), true)`),
		chromedp.Sleep(3*time.Second),
		waitText("[data-live-state]", regexp.MustCompile(`^live`)))
	// Times are in the viewer's zone (the page's own script), UTC on hover.
	if raw := value(b, "times left in UTC text", 10*time.Second, chromedp.Evaluate[int](
		`Array.from(document.querySelectorAll("time[data-local]")).filter(e => /^\d{4}-\d\d-\d\d /.test(e.textContent)).length`)); raw != 0 {
		t.Errorf("%d times on the device page were not put in the viewer's zone", raw)
	}
	b.view("view-device")

	// A chiller's desired setpoint from the twin's form.
	chiller := value(b, "the demo's chiller", 10*time.Second, chromedp.Evaluate[string](
		`Array.from(document.querySelectorAll("a")).map(a => a.getAttribute("href")).find(h => /chiller/.test(h)) || ""`))
	if chiller == "" {
		b.run("back to the demo's page", 30*time.Second, chromedp.Navigate(d.base+"/demo"))
		chiller = value(b, "the demo's chiller", 10*time.Second, chromedp.Evaluate[string](
			`Array.from(document.querySelectorAll("ul.looklist a")).map(a => a.getAttribute("href")).find(h => /chiller/.test(h)) || ""`))
	}
	if chiller == "" {
		t.Fatal("no chiller on the demo's page")
	}
	b.run("edit the chiller's desired setpoint", 60*time.Second,
		chromedp.Navigate(d.base+chiller),
		chromedp.SetValue(chromedp.CSS("#p-setpoint"), "7.5"),
		chromedp.Click(chromedp.CSS(`form[action$="/twin#twin"] button[type="submit"]`)),
		waitText("main", regexp.MustCompile(`Desired state saved`)),
		waitText("main", regexp.MustCompile(`setpoint\s+Cel\s+7\.5`)))
	b.shot("chiller-twin")

	// A loop's action waiting for a person: the chillers' setpoint shift.
	b.run("an action waits for approval", 5*time.Minute, reloadUntil(d.base+"/approvals", "form.vote button"))
	b.shot("approvals")
	b.view("view-approvals")
	row := value(b, "the first waiting action", 10*time.Second, chromedp.Evaluate[string](`document.querySelector("form.vote").closest("tr").id`))
	b.run("approve it", 60*time.Second,
		chromedp.Click(chromedp.CSS("form.vote button")),
		waitText("#"+row, regexp.MustCompile(`(?i)approved|recorded|sent|verifying|done`)))

	// An alarm acknowledged.
	b.run("an alarm to acknowledge", 5*time.Minute, reloadUntil(d.base+"/alarms", `form[action$="/ack"] button`))
	b.shot("alarms")
	b.view("view-alarms")
	b.run("acknowledge it", 60*time.Second,
		chromedp.Click(chromedp.CSS(`form[action$="/ack"] button`)),
		waitText("main", regexp.MustCompile(`The alarm was acknowledged`)))

	// An audit entry verified in the browser.
	b.run("verify the newest audit entry", 60*time.Second,
		chromedp.Navigate(d.base+"/audit"),
		chromedp.Click(chromedp.CSS(`a[aria-label^="Verify entry"]`)),
		waitText(".verify-result", regexp.MustCompile(`^verified: entry \d+ is in the log of size \d+`)))
	b.shot("audit")
	b.run("scroll to the verified entry", 10*time.Second, chromedp.ScrollIntoView(chromedp.CSS(".verify-result")))
	b.view("view-audit")

	for _, p := range []struct{ name, path string }{
		{"fleet", "/"}, {"loops", "/loops"}, {"models", "/models"}, {"ml", "/ml"}, {"edges", "/edges"},
	} {
		b.run("open "+p.path, 60*time.Second, chromedp.Navigate(d.base+p.path), chromedp.WaitVisible(chromedp.CSS("main h1")))
		b.shot(p.name)
	}
	// The learning loop (at 40 s): version 2 promoted by its gates, the
	// bad version 3 rolled back by its own; the rollout's gates, the
	// dataset's quality, a captured window's chart.
	b.run("the learning loop's rollouts", 3*time.Minute, reloadUntil(d.base+"/ml", "td .badge.ro-rolled_back"))
	b.shot("ml-rollouts")
	b.run("the learning loop's end", 2*time.Minute, reloadUntil(d.base+"/ml", "main:not(:has(td .badge.ro-running))"))
	if text := value(b, "the rollouts", 10*time.Second, chromedp.Text(chromedp.CSS("main"))); !strings.Contains(text, "v2 replacing v1\tdone") || !strings.Contains(text, "rolled_back") {
		t.Errorf("/ml after the learning loop, want v2 done and v3 rolled back: %s", text)
		b.run("v2's rollout", 30*time.Second, chromedp.Navigate(d.base+"/ml/rollouts/ro-1?tenant=demo"), chromedp.WaitVisible(chromedp.CSS("main h1")))
		t.Logf("v2's rollout, its gates: %s", value(b, "v2's gates", 10*time.Second, chromedp.Text(chromedp.CSS("main"))))
	}
	b.run("the bad version's rollout", 30*time.Second, chromedp.Navigate(d.base+"/ml/rollouts/ro-2?tenant=demo"), chromedp.WaitVisible(chromedp.CSS("section.record")))
	if text := value(b, "its gates", 10*time.Second, chromedp.Text(chromedp.CSS("main"))); !strings.Contains(text, "disagreement") || !strings.Contains(text, "fail") {
		t.Errorf("the bad version's rollout: %s", text)
	}
	b.shot("rollout")
	b.run("the datasets", 30*time.Second, chromedp.Navigate(d.base+"/datasets?tenant=demo"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	b.shot("datasets")
	b.run("the label queue", 30*time.Second, chromedp.Navigate(d.base+"/labels?tenant=demo"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	b.shot("labels")
	if w := value(b, "a window of the queue", 10*time.Second, chromedp.Evaluate[string](`(document.querySelector('main a[href^="/windows/"]')||{}).href||""`)); w != "" {
		b.run("a window", 30*time.Second, chromedp.Navigate(w), chromedp.WaitVisible(chromedp.CSS("main h1")), waitJS(`document.querySelector("canvas") !== null`))
		b.shot("window")
	}
	// A phone's width: the pages reflow, nothing wider than the screen.
	b.run("a phone's viewport", 30*time.Second, chromedp.EmulateViewport(390, 844))
	for _, p := range []struct{ name, path string }{{"phone-fleet", "/"}, {"phone-device", "/objects/" + cnc}} {
		b.run("open "+p.path+" on a phone", 60*time.Second, chromedp.Navigate(d.base+p.path), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if w := value(b, "the page's width", 10*time.Second, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 400 {
			t.Errorf("%s is %d px wide on a 390 px screen", p.path, w)
		}
		b.shot(p.name)
	}
	t.Logf("screenshots in %s", b.shots)
}

// waitJS waits until a JavaScript expression is true.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			ok, err := chromedp.Evaluate[bool](expr)(ctx, t)
			if err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("never true: %s", expr)
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
}

// reloadUntil opens url every 5 s until an element matches sel.
func reloadUntil(url, sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			if _, err := chromedp.Navigate(url)(ctx, t); err != nil {
				return err
			}
			if ok, err := chromedp.Evaluate[bool](`document.querySelector(`+jsString(sel)+`) !== null`)(ctx, t); err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s never showed %s", url, sel)
			case <-time.After(5 * time.Second):
			}
		}
	})
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
