package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/hubclient"
)

// Store reads back what a target stored of a run: the other way to count
// deliveries, for a target whose job is to persist what devices send rather
// than to relay it (wanwu's hub, measured as the issue defines durable
// ingest). Both methods look only at samples timestamped in [from, to], so
// earlier runs against the same store do not count.
type Store interface {
	// Count returns how many messages of the tenant's devices the store holds.
	Count(ctx context.Context, from, to time.Time) (int64, error)
	// Seqs returns the seq values the store holds for device code, in the
	// store's order (by arrival, since the seq record has no time of its own).
	Seqs(ctx context.Context, code string, from, to time.Time) ([]int, error)
}

// HubStore reads a wanwu hub's time-series store through its
// Prometheus-compatible API: every generated message carries a "seq" record,
// stored as the series seq{tenant, device} with the message's own timestamp.
type HubStore struct {
	c      *hubclient.Client
	tenant string
}

// NewHubStore returns the store of the hub at base, read with an API token.
func NewHubStore(base, token, tenant string) *HubStore {
	return &HubStore{
		c:      &hubclient.Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}},
		tenant: tenant,
	}
}

// promResult is the part of a Prometheus API answer these queries read.
type promResult struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Value  []json.RawMessage   `json:"value"`  // vector: [t, "v"]
			Values [][]json.RawMessage `json:"values"` // matrix: [[t, "v"], ...]
		} `json:"result"`
	} `json:"data"`
}

// query evaluates expr at to, with a range selector that covers [from, to].
func (s *HubStore) query(ctx context.Context, expr string, to time.Time) (*promResult, error) {
	q := url.Values{"query": {expr}, "time": {strconv.FormatFloat(float64(to.UnixMilli())/1000, 'f', 3, 64)}}
	var out promResult
	if _, err := s.c.JSON(ctx, "GET", "/prometheus/api/v1/query?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: status %q", expr, out.Status)
	}
	return &out, nil
}

// window is the PromQL range that, evaluated at to, selects (to-window, to] ⊇ [from, to].
func window(from, to time.Time) string {
	return strconv.FormatInt(max(to.Sub(from).Milliseconds()+1, 1), 10) + "ms"
}

// Count implements Store.
func (s *HubStore) Count(ctx context.Context, from, to time.Time) (int64, error) {
	expr := fmt.Sprintf(`sum(count_over_time(seq{tenant=%q}[%s]))`, s.tenant, window(from, to))
	out, err := s.query(ctx, expr, to)
	if err != nil {
		return 0, err
	}
	if len(out.Data.Result) == 0 {
		return 0, nil // no samples at all yet
	}
	v := out.Data.Result[0].Value
	if len(v) != 2 {
		return 0, fmt.Errorf("count: unexpected answer")
	}
	return sampleInt(v[1])
}

// Seqs implements Store.
func (s *HubStore) Seqs(ctx context.Context, code string, from, to time.Time) ([]int, error) {
	expr := fmt.Sprintf(`seq{tenant=%q,device=%q}[%s]`, s.tenant, code, window(from, to))
	out, err := s.query(ctx, expr, to)
	if err != nil {
		return nil, err
	}
	var seqs []int
	for _, r := range out.Data.Result {
		for _, v := range r.Values {
			if len(v) != 2 {
				return nil, fmt.Errorf("seqs of %s: unexpected answer", code)
			}
			n, err := sampleInt(v[1])
			if err != nil {
				return nil, fmt.Errorf("seqs of %s: %w", code, err)
			}
			seqs = append(seqs, int(n))
		}
	}
	return seqs, nil
}

// sampleInt reads a Prometheus sample value (a JSON string) as an integer.
func sampleInt(raw json.RawMessage) (int64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("sample value %s: %w", raw, err)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != float64(int64(f)) {
		return 0, fmt.Errorf("sample value %q is not an integer", s)
	}
	return int64(f), nil
}
