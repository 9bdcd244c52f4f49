package hubtest

// Tests that run the real wanwu program as a child process: signals, kill -9
// and the data directory lock. The child is this test binary re-executed with
// WANWU_TEST_MAIN=1 (see main_test.go), so no separate build is needed.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/credential"
	"github.com/wanwu-iot/wanwu/internal/hub"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// Deadlines for a child hub. They bound a hang; they are not performance
// assertions (a race-instrumented child on two cores is slow to start).
const (
	procStartTimeout = 30 * time.Second
	procExitTimeout  = 30 * time.Second
)

// lockedBuffer collects a child's output; the exec package copies into it
// from its own goroutine while the test may read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hubProc is a `wanwu hub` child process.
type hubProc struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	stdout lockedBuffer
	stderr lockedBuffer
	done   chan struct{} // closed when the process has exited and waitErr is set
	// waitErr is cmd.Wait's result; read it only after done is closed.
	waitErr error

	// Set by waitReady.
	url, token string
}

// launchHub starts `wanwu hub` on dir with a free port; it does not wait
// for the hub to be ready. The process is killed when the test ends, if it
// still runs.
func launchHub(t *testing.T, dir string, extra ...string) *hubProc {
	t.Helper()
	args := append([]string{"hub", "--data-dir", dir, "--http.listen", "127.0.0.1:0", "--mqtt.listen", "127.0.0.1:0", "--mqtt.tls-listen", "127.0.0.1:0", "--coap.dtls-listen", "127.0.0.1:0"}, extra...)
	p := &hubProc{t: t, dir: dir, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), envTestMain+"=1")
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start wanwu hub: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("hub pid %d stderr:\n%s", p.cmd.Process.Pid, p.stderr.String())
		}
	})
	return p
}

// startHubProc launches a hub and waits until it is ready.
func startHubProc(t *testing.T, dir string, extra ...string) *hubProc {
	t.Helper()
	p := launchHub(t, dir, extra...)
	p.waitReady()
	return p
}

func (p *hubProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady polls for <data-dir>/hub.url and then /readyz, failing the test
// if the process exits first or the deadline passes.
func (p *hubProc) waitReady() {
	p.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(procStartTimeout)
	for {
		if p.exited() {
			p.t.Fatalf("hub exited before it was ready (%v)\nstderr:\n%s", p.waitErr, p.stderr.String())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("hub not ready after %v\nstderr:\n%s", procStartTimeout, p.stderr.String())
		}
		if b, err := os.ReadFile(filepath.Join(p.dir, hub.URLFile)); err == nil {
			url := strings.TrimSpace(string(b))
			if resp, err := client.Get(url + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					p.url = url
					break
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(p.dir, hub.AdminTokenFile))
	if err != nil {
		p.t.Fatalf("read admin token: %v", err)
	}
	p.token = strings.TrimSpace(string(tok))
}

// signal sends sig and waits for the process to exit; it returns the
// process state.
func (p *hubProc) signal(sig os.Signal) *os.ProcessState {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
	return p.wait()
}

// wait waits for the process to exit on its own.
func (p *hubProc) wait() *os.ProcessState {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(procExitTimeout):
		p.t.Fatalf("hub did not exit within %v\nstderr:\n%s", procExitTimeout, p.stderr.String())
	}
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		p.t.Fatalf("wait: %v", p.waitErr)
	}
	return p.cmd.ProcessState
}

// must sends an admin request to the child and fails unless the status is want.
func (p *hubProc) must(want int, method, path string, body any) []byte {
	p.t.Helper()
	status, out, err := apiCall(http.DefaultClient, method, p.url+path, p.token, body)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	if status != want {
		p.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	return out
}

// apiCall sends one JSON request; it does not touch a testing.T, so worker
// goroutines may use it.
func apiCall(client *http.Client, method, url, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, out, nil
}

// hubKey reads the hub's signing public key from the data directory.
func hubKey(t *testing.T, dir string) ed25519.PublicKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, hub.SigningPubFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keys.ParsePublicKey(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	ed, ok := pub.(ed25519.PublicKey)
	if !ok {
		t.Fatalf("signing.pub holds a %T, want Ed25519", pub)
	}
	return ed
}

// checkCredential verifies a credential offline and checks it names code.
func checkCredential(t *testing.T, pub ed25519.PublicKey, code, token string) {
	t.Helper()
	cl, err := credential.Verify(token, pub, time.Now())
	if err != nil {
		t.Errorf("credential of %s does not verify: %v", code, err)
		return
	}
	if cl.Code != code {
		t.Errorf("credential of %s names %s", code, cl.Code)
	}
}

// TestSignalShutdown: SIGINT and SIGTERM stop the hub cleanly (exit 0, a log
// line saying so), release the data directory lock, and a new hub on the
// same directory serves everything registered before.
func TestSignalShutdown(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  os.Signal
	}{
		{"SIGINT", os.Interrupt},
		{"SIGTERM", syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := startHubProc(t, dir)
			if out := p.stdout.String(); !strings.Contains(out, "wanwu hub is running at "+p.url) {
				t.Errorf("hub did not print its URL and the tour:\n%s", out)
			}
			p.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
			type reg struct {
				Object struct{ Code, Number, DID string }
			}
			var regs []reg
			for i := range 3 {
				var r reg
				b := p.must(201, "POST", "/api/v1/objects", map[string]any{"code": fmt.Sprintf("acme:s-%d", i), "key_alg": "ed25519"})
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatal(err)
				}
				regs = append(regs, r)
			}

			st := p.signal(tc.sig)
			if code := st.ExitCode(); code != 0 {
				t.Fatalf("exit code %d after %s, want 0 (%v)\nstderr:\n%s", code, tc.name, st, p.stderr.String())
			}
			logs := p.stderr.String()
			for _, want := range []string{"msg=\"shutting down\"", "msg=stopped"} {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %s:\n%s", want, logs)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, hub.URLFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("hub.url left behind after a clean stop: %v", err)
			}

			// The lock is released: a second hub starts on the directory and
			// serves the same records.
			p2 := startHubProc(t, dir)
			pub := hubKey(t, dir)
			for _, r := range regs {
				for _, key := range []string{r.Object.Code, r.Object.Number, r.Object.DID} {
					var o struct{ Code, Number string }
					if err := json.Unmarshal(p2.must(200, "GET", "/api/v1/resolve/"+key, nil), &o); err != nil {
						t.Fatal(err)
					}
					if o.Code != r.Object.Code || o.Number != r.Object.Number {
						t.Errorf("resolve %s after restart = %+v, want %s %s", key, o, r.Object.Code, r.Object.Number)
					}
				}
				var c struct{ Credential string }
				if err := json.Unmarshal(p2.must(200, "GET", "/api/v1/objects/"+r.Object.Code+"/credential", nil), &c); err != nil {
					t.Fatal(err)
				}
				checkCredential(t, pub, r.Object.Code, c.Credential)
			}
			if st := p2.signal(tc.sig); st.ExitCode() != 0 {
				t.Errorf("second hub: exit code %d after %s", st.ExitCode(), tc.name)
			}
		})
	}
}

// TestKillNineLosesNothingAcknowledged registers objects from several
// clients at once, kills the hub with SIGKILL in the middle, and counts after
// a restart: every acknowledged registration is there with a credential that
// verifies (lost = 0); registrations in flight at the kill may or may not be
// there; the audit log verifies and has exactly one object.registered entry
// per stored object.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	const (
		workers    = 4
		loadWindow = 1500 * time.Millisecond
		enough     = 400 // acknowledged registrations that end the window early
	)
	dir := t.TempDir()
	p := startHubProc(t, dir)
	p.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})

	var (
		killed   atomic.Bool
		ackCount atomic.Int64
		mu       sync.Mutex
		acked    = map[string]string{} // code → credential in the 201 answer
		failures []string              // errors before the kill
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 20 * time.Second}
	for w := range workers {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				code := fmt.Sprintf("acme:k-%d-%d", w, seq)
				status, body, err := apiCall(client, "POST", p.url+"/api/v1/objects", p.token, map[string]any{"code": code, "key_alg": "ed25519"})
				if err == nil && status == http.StatusCreated {
					var reg struct{ Credential string }
					if err := json.Unmarshal(body, &reg); err != nil {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: 201 with a body that is not JSON: %v", code, err))
						mu.Unlock()
						return
					}
					mu.Lock()
					acked[code] = reg.Credential
					mu.Unlock()
					ackCount.Add(1)
					continue
				}
				if !killed.Load() {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: status %d, err %v: %s", code, status, err, body))
					mu.Unlock()
				}
				return // after the kill every request fails; one in flight per worker at most
			}
		})
	}

	start := time.Now()
	for time.Since(start) < loadWindow && ackCount.Load() < enough {
		time.Sleep(10 * time.Millisecond)
	}
	killed.Store(true)
	st := p.signal(syscall.SIGKILL)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("hub was not killed by SIGKILL: %v", st)
	}
	wg.Wait()
	window := time.Since(start)
	for _, f := range failures {
		t.Errorf("registration failed before the kill: %s", f)
	}
	if len(acked) == 0 {
		t.Fatalf("no registration was acknowledged in %v\nstderr:\n%s", window, p.stderr.String())
	}

	// Restart on the same directory, in-process.
	h := StartIn(t, dir)
	ctx := t.Context()
	stored := map[string]*registry.Object{}
	for after := ""; ; {
		objs, next, err := h.Registry().List(ctx, registry.ListFilter{Tenant: "acme", After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			stored[o.Code] = o
		}
		if next == "" {
			break
		}
		after = next
	}

	pub := hubKey(t, dir)
	var ok, lost, inFlight int
	for code, cred := range acked {
		if _, found := stored[code]; !found {
			lost++
			t.Errorf("LOST: %s was acknowledged (201) but is not stored after kill -9", code)
			continue
		}
		ok++
		storedCred, err := h.Registry().Credential(ctx, code)
		if err != nil {
			t.Errorf("credential of %s: %v", code, err)
			continue
		}
		if storedCred != cred {
			t.Errorf("stored credential of %s differs from the acknowledged one", code)
		}
	}
	for code, o := range stored {
		if _, wasAcked := acked[code]; !wasAcked {
			inFlight++
		}
		if o.Status != registry.StatusActive {
			t.Errorf("%s: status %s, want active", code, o.Status)
		}
		cred, err := h.Registry().Credential(ctx, code)
		if err != nil {
			t.Errorf("credential of %s: %v", code, err)
			continue
		}
		checkCredential(t, pub, code, cred)
	}
	t.Logf("kill -9 after %v of load from %d clients: ok=%d lost=%d in-flight=%d (acknowledged %d, stored %d)",
		window.Round(time.Millisecond), workers, ok, lost, inFlight, len(acked), len(stored))
	if inFlight > workers {
		t.Errorf("%d stored objects were never acknowledged; at most %d requests (one per client) were in flight", inFlight, workers)
	}

	// One object.registered entry per stored object, and none for an object
	// that is not stored.
	size, err := h.Audit().Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]int{}
	for from := uint64(0); from < size; from += 1000 {
		entries, err := h.Audit().Entries(ctx, from, min(size, from+1000))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Kind == registry.KindObjectRegistered {
				registered[e.Subject]++
			}
		}
	}
	for code := range stored {
		if n := registered[code]; n != 1 {
			t.Errorf("%s is stored but has %d object.registered entries, want 1", code, n)
		}
	}
	for code := range registered {
		if _, found := stored[code]; !found {
			t.Errorf("audit log records the registration of %s, which is not stored", code)
		}
	}

	// The AUDIT stream is persisted without an fsync per message, so the kill
	// may have taken its newest entries; the forwarder republishes them
	// from the log, and the stream ends up holding every entry.
	eventually(t, "the AUDIT stream holds the whole log", func() error {
		published, err := h.Bus().AuditPublished(ctx)
		if err != nil {
			return err
		}
		if size, err := h.Audit().Size(ctx); err != nil || published != size {
			return fmt.Errorf("stream holds %d entries, log %d (%v)", published, size, err)
		}
		return nil
	})

	// The log verifies offline once the hub has stopped.
	h.Stop()
	out, errs, exit := h.Wanwu("verify", "log")
	if exit != 0 || !strings.Contains(out, "ok:") {
		t.Errorf("verify log after kill -9: exit %d\nstdout: %s\nstderr: %s", exit, out, errs)
	}
}

// TestSecondHubRefusesLockedDataDir: a hub on a data directory that another
// hub holds exits with a message saying so, and leaves the running hub alone.
func TestSecondHubRefusesLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	p := startHubProc(t, dir)
	urlBefore, err := os.ReadFile(filepath.Join(dir, hub.URLFile))
	if err != nil {
		t.Fatal(err)
	}

	second := launchHub(t, dir)
	st := second.wait()
	if st.ExitCode() != 1 {
		t.Errorf("second hub: exit code %d, want 1", st.ExitCode())
	}
	errs := second.stderr.String()
	if !strings.Contains(errs, "is in use by another hub") || !strings.Contains(errs, dir) {
		t.Errorf("second hub's message does not say the data directory is locked:\n%s", errs)
	}

	// In-process, the same refusal is an error from Start, and Shutdown
	// after the failed Start is harmless.
	cfg := config.DefaultHub()
	cfg.DataDir = dir
	cfg.HTTP.Listen = "127.0.0.1:0"
	h := hub.New(hub.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err := h.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "in use by another hub") {
		t.Errorf("in-process Start on a locked dir: %v", err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after a failed Start: %v", err)
	}

	// The first hub still runs, undisturbed.
	if urlAfter, err := os.ReadFile(filepath.Join(dir, hub.URLFile)); err != nil || !bytes.Equal(urlAfter, urlBefore) {
		t.Errorf("hub.url changed under the running hub: %q → %q (%v)", urlBefore, urlAfter, err)
	}
	p.must(200, "GET", "/readyz", nil)
	p.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	if st := p.signal(syscall.SIGTERM); st.ExitCode() != 0 {
		t.Errorf("first hub: exit code %d after SIGTERM", st.ExitCode())
	}
}
