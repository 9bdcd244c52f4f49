package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// member is one simulated device as the hub registered it.
type member struct {
	Code    string
	Model   string
	Network string
	Class   string
	Source  string // the local address its connections start from ("" any)
	Edge    string // the edge node it is behind ("" none)
	// Path places it in the tenant's hierarchy: its area (plant or
	// city) and its class.
	Path string
}

// savedIdentity is an identity in the state file: the SDK's identity
// document and the private key, PEM.
type savedIdentity struct {
	Identity *device.Identity `json:"identity"`
	Key      string           `json:"key"`
}

// state is the state file: the identities the hub issued, for the hub whose
// device CA it names.
type state struct {
	CA         string                   `json:"ca_sha256"`
	Identities map[string]savedIdentity `json:"identities"`
	Modified   time.Time                `json:"modified"`
}

// provision makes sure the hub has the scenario's tenant, thing models and
// devices, and returns each device's identity. Identities are cached in
// stateFile; a device the hub has but whose identity is not cached gets a
// new hub-generated key (rotation), and a device it lacks is registered
// through the bulk import (one request per 1,000 devices).
func provision(ctx context.Context, h *hubclient.Client, tenant string, models map[string][]byte, members []member, stateFile string, claim bool, progress func(string)) (map[string]*device.Identity, error) {
	caPEM, _, err := h.Do(ctx, "GET", "/api/v1/ca.pem", nil, "")
	if err != nil {
		return nil, fmt.Errorf("sim: provision: %w", err)
	}
	sum := sha256.Sum256(caPEM)
	st := state{CA: hex.EncodeToString(sum[:]), Identities: map[string]savedIdentity{}}
	if stateFile != "" {
		if b, err := os.ReadFile(stateFile); err == nil {
			var old state
			if err := json.Unmarshal(b, &old); err != nil {
				return nil, fmt.Errorf("sim: state file %s: %w", stateFile, err)
			}
			if old.CA == st.CA && old.Identities != nil {
				st.Identities = old.Identities
			} else {
				progress(fmt.Sprintf("state file %s is for another hub; provisioning anew", stateFile))
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("sim: state file: %w", err)
		}
	}

	body, _ := json.Marshal(map[string]string{"name": tenant, "title": "simulated devices"})
	if _, status, err := h.Do(ctx, "POST", "/api/v1/tenants", bytes.NewReader(body), "application/json"); err != nil && status != http.StatusConflict {
		return nil, fmt.Errorf("sim: provision: create tenant %s: %w", tenant, err)
	}
	for name, doc := range models {
		if _, _, err := h.Do(ctx, "POST", "/api/v1/models", bytes.NewReader(doc), "application/json"); err != nil {
			return nil, fmt.Errorf("sim: provision: model %s: %w", name, err)
		}
	}

	var missing []member
	for _, m := range members {
		if _, ok := st.Identities[m.Code]; !ok {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		how := "through the bulk import"
		if claim {
			how = "each claiming its identity with its class's claim token"
		}
		progress(fmt.Sprintf("registering %d devices in tenant %s, %s", len(missing), tenant, how))
	}
	if claim && len(missing) > 0 {
		if err := claimAll(ctx, h, tenant, missing, &st, caPEM, progress); err != nil {
			return nil, err
		}
		if err := saveState(stateFile, &st); err != nil {
			return nil, err
		}
		missing = nil
	}
	const batch = 1000
	for start := 0; start < len(missing); start += batch {
		rows := missing[start:min(start+batch, len(missing))]
		var csv strings.Builder
		csv.WriteString("code,kind,key_alg,model,network,tags,edge,path\n")
		for _, m := range rows {
			fmt.Fprintf(&csv, "%s,device,p256,%s,%s,class=%s,%s,%s\n", m.Code, m.Model, m.Network, m.Class, m.Edge, m.Path)
		}
		out, _, err := h.Do(ctx, "POST", "/api/v1/objects/import", strings.NewReader(csv.String()), "text/csv")
		if err != nil {
			return nil, fmt.Errorf("sim: provision: import: %w", err)
		}
		var res struct {
			Rows []struct {
				Code         string           `json:"code"`
				Result       string           `json:"result"`
				Reason       string           `json:"reason"`
				Registration *json.RawMessage `json:"registration"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			return nil, fmt.Errorf("sim: provision: import answer: %w", err)
		}
		for _, r := range res.Rows {
			reg := r.Registration
			if reg == nil && r.Result == "unchanged" {
				// Registered earlier, identity not cached: a new key.
				raw, _, err := h.Do(ctx, "POST", "/api/v1/objects/"+url.PathEscape(r.Code)+"/rotate",
					strings.NewReader(`{"revoke_old_now":true,"key_alg":"p256"}`), "application/json")
				if err != nil {
					return nil, fmt.Errorf("sim: provision: %s exists and its identity is not in the state file; rotating its key: %w", r.Code, err)
				}
				m := json.RawMessage(raw)
				reg = &m
			}
			if reg == nil {
				return nil, fmt.Errorf("sim: provision: %s: %s %s", r.Code, r.Result, r.Reason)
			}
			sv, err := identityOf(*reg, string(caPEM))
			if err != nil {
				return nil, fmt.Errorf("sim: provision: %s: %w", r.Code, err)
			}
			st.Identities[r.Code] = sv
		}
		if err := saveState(stateFile, &st); err != nil {
			return nil, err
		}
		progress(fmt.Sprintf("registered %d/%d", min(start+batch, len(missing)), len(missing)))
	}

	ids := make(map[string]*device.Identity, len(members))
	for _, m := range members {
		s := st.Identities[m.Code]
		k, err := keys.ParsePrivateKeyPEM([]byte(s.Key))
		if err != nil || s.Identity == nil {
			return nil, fmt.Errorf("sim: state file: identity of %s: %v", m.Code, err)
		}
		id := *s.Identity
		id.Key = k
		ids[m.Code] = &id
	}
	return ids, nil
}

// claimAll has each missing device claim its identity itself, as a device
// in the field does: one claim token per class (made with the operator's
// token, with the class's model, network and tag, one use per device),
// then each device makes its P-256 key and trades the token and a CSR for
// its certificate (device.Claim), from its own source address, since the
// hub limits claims per address; eight at a time, waiting out a 429.
func claimAll(ctx context.Context, h *hubclient.Client, tenant string, missing []member, st *state, caPEM []byte, progress func(string)) error {
	byClass := map[string][]member{}
	var order []string
	for _, m := range missing {
		if byClass[m.Class] == nil {
			order = append(order, m.Class)
		}
		byClass[m.Class] = append(byClass[m.Class], m)
	}
	type job struct {
		m     member
		token string
	}
	var jobs []job
	for _, class := range order {
		ms := byClass[class]
		id, version, _ := strings.Cut(ms[0].Model, "@")
		body, _ := json.Marshal(map[string]any{"tenant": tenant, "name": "sim " + class, "max_uses": len(ms), "ttl": "1h",
			"model": map[string]string{"id": id, "version": version}, "network": ms[0].Network, "tags": map[string]string{"class": class}, "edge": ms[0].Edge})
		raw, _, err := h.Do(ctx, "POST", "/api/v1/claims", bytes.NewReader(body), "application/json")
		if err != nil {
			return fmt.Errorf("sim: provision: claim token for class %s: %w", class, err)
		}
		var out struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || out.Token == "" {
			return fmt.Errorf("sim: provision: claim token for class %s: no token in the answer", class)
		}
		for _, m := range ms {
			jobs = append(jobs, job{m, out.Token})
		}
	}
	clients := map[string]*http.Client{}
	clientFor := func(src string) *http.Client {
		if c := clients[src]; c != nil {
			return c
		}
		d := &net.Dialer{Timeout: 30 * time.Second}
		if ip := net.ParseIP(src); ip != nil {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}}
		clients[src] = c
		return c
	}
	for _, j := range jobs {
		clientFor(j.m.Source)
	}
	var mu sync.Mutex
	var firstErr error
	done := 0
	work := make(chan job)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				sv, err := claimOne(ctx, h.Base, j.token, j.m, clients[j.m.Source], caPEM)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("sim: provision: %s: %w", j.m.Code, err)
				}
				if err == nil {
					st.Identities[j.m.Code] = sv
					if done++; done%500 == 0 {
						progress(fmt.Sprintf("claimed %d/%d", done, len(jobs)))
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		work <- j
	}
	close(work)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// claimOne is one device's claim, tried again while the hub says 429.
func claimOne(ctx context.Context, hub, token string, m member, hc *http.Client, caPEM []byte) (savedIdentity, error) {
	key, err := device.GenerateKey()
	if err != nil {
		return savedIdentity{}, err
	}
	_, local, _ := strings.Cut(m.Code, ":")
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		id, err := device.Claim(ctx, hub, token, key, device.ClaimOptions{ID: local, HTTPClient: hc})
		var he *device.HubError
		if errors.As(err, &he) && he.Status == http.StatusTooManyRequests {
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return savedIdentity{}, ctx.Err()
			}
		}
		if err != nil {
			return savedIdentity{}, err
		}
		if id.CACertificate == "" {
			id.CACertificate = string(caPEM)
		}
		return saved(id)
	}
}

// identityOf reads a registration (import row or rotation answer) with the
// key the hub made.
func identityOf(raw json.RawMessage, caPEM string) (savedIdentity, error) {
	id, err := device.ParseRegistration(raw, nil)
	if err != nil {
		return savedIdentity{}, err
	}
	if id.Certificate == "" {
		return savedIdentity{}, errors.New("the hub returned no certificate")
	}
	if id.CACertificate == "" {
		id.CACertificate = caPEM
	}
	return saved(id)
}

// saved is an identity as the state file keeps it.
func saved(id *device.Identity) (savedIdentity, error) {
	pemKey, err := keys.MarshalPrivateKeyPEM(id.Key)
	if err != nil {
		return savedIdentity{}, err
	}
	cp := *id
	cp.Key = nil
	return savedIdentity{Identity: &cp, Key: string(pemKey)}, nil
}

// saveState writes the state file (mode 0600: it holds private keys)
// through a temporary file and a rename.
func saveState(path string, st *state) error {
	if path == "" {
		return nil
	}
	st.Modified = time.Now().UTC()
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("sim: state file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("sim: state file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("sim: state file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sim: state file: %w", err)
	}
	return nil
}
