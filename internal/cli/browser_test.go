package cli

import (
	"context"
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
// prints, lands on the demo's page, finds a device by its code and
// operates the plant and the city from the console.
func TestConsoleInBrowser(t *testing.T) {
	exe := chromium(t)
	d := startDemo(t, "--no-operator", "--devices", "60")
	b := newBrowser(t, exe, 1280, 900)

	b.run("open the sign-in link", 60*time.Second,
		chromedp.Navigate(d.signIn),
		waitText("main h1", regexp.MustCompile(`wanwu demo`)),
		waitText("#demo-status", regexp.MustCompile(`devices online`)))
	loc := value(b, "the address bar", 10*time.Second, chromedp.Location())
	if strings.Contains(loc, "token") {
		t.Errorf("the token stays in the address bar: %s", loc)
	}
	b.shot("demo")

	code := value(b, "the demo's first device", 10*time.Second, chromedp.Text(chromedp.CSS("ul.looklist li a")))
	b.run("find it by its code", 60*time.Second,
		chromedp.Navigate(d.base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#summary")),
		chromedp.SendKeys(chromedp.CSS("#q"), code),
		chromedp.Submit(chromedp.CSS("#q")),
		waitText("main h1", regexp.MustCompile(regexp.QuoteMeta(code))))
	b.shot("fleet-then-device")
}
