package hubtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/config"
)

// fleetCSV is a bulk import of n devices with hub-generated keys.
func fleetCSV(prefix string, n int) string {
	var b strings.Builder
	b.WriteString("code,kind,key_alg,path,tags\n")
	for i := range n {
		fmt.Fprintf(&b, "acme:%s-%05d,device,ed25519,plant-1/line-%d,batch=b%d\n", prefix, i, i%7, i%13)
	}
	return b.String()
}

// TestBulkImportBoundedMemory: a bulk import streamed as NDJSON holds one
// row at a time, so the hub's heap does not grow with the file. Before, the
// whole summary (every registration with its certificate, credential and
// generated key) was built in memory and then encoded again, 5–6 times the
// body. The heap is sampled during the import with the GC kept tight, so
// that what is sampled is what is live.
func TestBulkImportBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("registers thousands of objects")
	}
	// The buffered answer grew by 26 MiB per 1,500 rows; streamed, the heap
	// grows by 10-15 MiB whatever the rows (what the hub and the GC's
	// floating garbage hold meanwhile, more with a larger heap left by
	// earlier tests). 3,000 rows keep the two apart.
	const rows = 3000
	const bound = 24 << 20
	h := Start(t)
	setupAcme(t, h)
	body := fleetCSV("m", rows)

	// The live heap as of the last GC (runtime/metrics), not the heap in
	// use: with a large heap left by earlier tests, even a 10% GC target
	// lets more garbage pile up than the bound, and garbage is not what
	// this test is about.
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	liveHeap := func() uint64 {
		metrics.Read(live)
		return live[0].Value.Uint64()
	}
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	base := liveHeap()
	var (
		mu   sync.Mutex
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			mu.Lock()
			peak = max(peak, liveHeap())
			mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()

	req, _ := http.NewRequest("POST", h.URL+"/api/v1/objects/import", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Read the answer as a client would, keeping only counts.
	created, keys := 0, 0
	var summary map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	badLines := 0
	for sc.Scan() {
		var l struct {
			Type         string
			Result       string
			Registration *struct {
				PrivateKey string `json:"private_key"`
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			badLines++
			continue
		}
		switch l.Type {
		case "row":
			if l.Result == "created" {
				created++
			}
			if l.Registration != nil && l.Registration.PrivateKey != "" {
				keys++
			}
		case "summary":
			_ = json.Unmarshal(sc.Bytes(), &summary)
		}
	}
	resp.Body.Close()
	close(done)
	wg.Wait()
	growth := int64(peak) - int64(base)
	t.Logf("live heap: %d MiB before, peak %d MiB during the import of %d rows (%d KiB of CSV)", base>>20, peak>>20, rows, len(body)>>10)
	if growth > bound {
		t.Errorf("heap grew by %d MiB during the import, want under %d MiB: the import holds more than a row at a time", growth>>20, bound>>20)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" || badLines > 0 {
		t.Fatalf("answer %d %s with %d lines that are not JSON, want 200 application/x-ndjson", resp.StatusCode, resp.Header.Get("Content-Type"), badLines)
	}
	if created != rows || keys != rows || summary["created"] != float64(rows) {
		t.Fatalf("%d created, %d keys, summary %v; want %d of each", created, keys, summary, rows)
	}
}

// TestBulkImportRowLimit: a file longer than identity.import_max_rows stops
// there with a reason in the summary line; the rows before it are
// registered and their results (keys) sent. ctl shows the rows and the
// reason and exits non-zero.
func TestBulkImportRowLimit(t *testing.T) {
	h := Start(t, func(c *config.Hub) { c.Identity.ImportMaxRows = 5 })
	setupAcme(t, h)
	path := filepath.Join(t.TempDir(), "fleet.csv")
	if err := os.WriteFile(path, []byte(fleetCSV("l", 8)), 0o644); err != nil {
		t.Fatal(err)
	}
	keysDir := filepath.Join(t.TempDir(), "keys")
	out, errs, code := h.Wanwu("ctl", "object", "import", path, "--out", keysDir)
	if code == 0 {
		t.Errorf("import over the row limit exited 0:\n%s", out)
	}
	for _, want := range []string{"line 6: created acme:l-00004", "5 created, 0 unchanged, 0 errors"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "too many rows: more than 5") {
		t.Errorf("error does not name the limit: %s", errs)
	}
	if _, err := os.Stat(filepath.Join(keysDir, "acme_l-00004", "key.pem")); err != nil {
		t.Errorf("key of the last row before the limit not written: %v", err)
	}
	if r := h.Do("GET", "/api/v1/objects/acme:l-00005", h.AdminToken, nil); r.Status != 404 {
		t.Errorf("row after the limit: %d, want 404 (not imported)", r.Status)
	}

	// The one-document JSON answer carries the rows done and why it stopped.
	r := h.Admin("POST", "/api/v1/objects/import", fleetCSV("j", 7))
	var sum struct {
		Created int
		Rows    []json.RawMessage
		Stopped string
	}
	if err := json.Unmarshal(r.Body, &sum); err != nil || r.Status != http.StatusMultiStatus || sum.Created != 5 || len(sum.Rows) != 5 || !strings.Contains(sum.Stopped, "more than 5") {
		t.Errorf("JSON import over the limit: %d %+v %v\n%s", r.Status, sum, err, r.Body)
	}
}
