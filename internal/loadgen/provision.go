package loadgen

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// ProvisionOptions says where to register the bench devices.
type ProvisionOptions struct {
	Hub    string // hub API base URL, e.g. http://127.0.0.1:8080
	Token  string // API token with the admin role (tenant creation) or operator on the tenant
	Tenant string // default "bench"
	N      int    // devices <Tenant>:dev-0 … dev-<N-1>
	// StateFile caches the devices' private keys between runs (mode 0600);
	// empty means no cache. A cache made for another hub (another device
	// CA) is ignored.
	StateFile string
	// Model, when set, is the thing model (<id>@<version>) the devices
	// are registered with.
	Model string
	// Batch is the number of rows per import request (default and at
	// most 1000, the most the hub answers as one JSON document).
	Batch int
	// Client is the HTTP client (default: one with a 5-minute timeout).
	Client   *http.Client
	Progress func(string)
}

// Device is a provisioned bench device.
type Device struct {
	Code string
	Key  crypto.Signer
}

// state is the StateFile's content.
type state struct {
	Hub      string            `json:"hub"`
	CA       string            `json:"ca_sha256"` // the hub's device CA certificate, to detect a different hub
	Tenant   string            `json:"tenant"`
	Keys     map[string]string `json:"keys"` // code -> private key PEM
	Modified time.Time         `json:"modified"`
}

// Provision makes sure the hub has tenant o.Tenant and devices dev-0 …
// dev-<N-1> with keys this process holds: it creates the tenant (an existing
// one is fine), registers the devices the state file does not know through
// the bulk import with hub-generated keys, and, for devices the hub already
// has but whose key is lost, rotates to a new hub-generated key.
func Provision(ctx context.Context, o ProvisionOptions) ([]Device, error) {
	if o.Tenant == "" {
		o.Tenant = DefaultTenant
	}
	if o.Batch <= 0 || o.Batch > 1000 {
		o.Batch = 1000
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Minute}
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	o.Hub = strings.TrimRight(o.Hub, "/")
	h := &hubclient.Client{Base: o.Hub, Token: o.Token, HTTP: o.Client}

	caPEM, _, err := h.Do(ctx, "GET", "/api/v1/ca.pem", nil, "")
	if err != nil {
		return nil, fmt.Errorf("loadgen: provision: %w", err)
	}
	sum := sha256.Sum256(caPEM)
	ca := hex.EncodeToString(sum[:])

	st := state{Hub: o.Hub, CA: ca, Tenant: o.Tenant, Keys: map[string]string{}}
	if o.StateFile != "" {
		if b, err := os.ReadFile(o.StateFile); err == nil {
			var old state
			if err := json.Unmarshal(b, &old); err != nil {
				return nil, fmt.Errorf("loadgen: state file %s: %w", o.StateFile, err)
			}
			if old.CA == ca && old.Tenant == o.Tenant && old.Keys != nil {
				st.Keys = old.Keys
			} else {
				o.Progress(fmt.Sprintf("state file %s is for another hub or tenant; provisioning anew", o.StateFile))
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("loadgen: state file: %w", err)
		}
	}

	body, _ := json.Marshal(map[string]string{"name": o.Tenant, "title": "load generator devices"})
	if _, status, err := h.Do(ctx, "POST", "/api/v1/tenants", bytes.NewReader(body), "application/json"); err != nil && status != http.StatusConflict {
		return nil, fmt.Errorf("loadgen: provision: create tenant %s: %w", o.Tenant, err)
	}

	var missing []string
	for i := 0; i < o.N; i++ {
		if c := DeviceCode(o.Tenant, i); st.Keys[c] == "" {
			missing = append(missing, c)
		}
	}
	save := func() error {
		if o.StateFile == "" {
			return nil
		}
		st.Modified = time.Now().UTC()
		b, _ := json.MarshalIndent(st, "", " ")
		if dir := filepath.Dir(o.StateFile); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("loadgen: state file: %w", err)
			}
		}
		tmp := o.StateFile + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return fmt.Errorf("loadgen: state file: %w", err)
		}
		if err := os.Rename(tmp, o.StateFile); err != nil {
			return fmt.Errorf("loadgen: state file: %w", err)
		}
		return nil
	}
	if len(missing) > 0 {
		o.Progress(fmt.Sprintf("registering %d devices in tenant %s at %s", len(missing), o.Tenant, o.Hub))
	}
	for start := 0; start < len(missing); start += o.Batch {
		batch := missing[start:min(start+o.Batch, len(missing))]
		var csv strings.Builder
		csv.WriteString("code,kind,key_alg,model\n")
		for _, c := range batch {
			csv.WriteString(c + ",device,p256," + o.Model + "\n")
		}
		out, _, err := h.Do(ctx, "POST", "/api/v1/objects/import", strings.NewReader(csv.String()), "text/csv")
		if err != nil {
			return nil, fmt.Errorf("loadgen: provision: import: %w", err)
		}
		var sum struct {
			Rows []struct {
				Code         string `json:"code"`
				Result       string `json:"result"`
				Reason       string `json:"reason"`
				Registration *struct {
					PrivateKey string `json:"private_key"`
				} `json:"registration"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(out, &sum); err != nil {
			return nil, fmt.Errorf("loadgen: provision: import answer: %w", err)
		}
		for _, r := range sum.Rows {
			switch {
			case r.Registration != nil && r.Registration.PrivateKey != "":
				st.Keys[r.Code] = r.Registration.PrivateKey
			case r.Result == "unchanged":
				// Registered earlier, key not cached: give it a new one.
				pem, err := rotate(ctx, h, r.Code)
				if err != nil {
					return nil, fmt.Errorf("loadgen: provision: %s exists and its key is not in the state file; rotating it: %w", r.Code, err)
				}
				st.Keys[r.Code] = pem
			default:
				return nil, fmt.Errorf("loadgen: provision: %s: %s %s", r.Code, r.Result, r.Reason)
			}
		}
		if err := save(); err != nil {
			return nil, err
		}
		o.Progress(fmt.Sprintf("registered %d/%d", min(start+o.Batch, len(missing)), len(missing)))
	}
	if len(missing) == 0 {
		if err := save(); err != nil {
			return nil, err
		}
	}

	devs := make([]Device, o.N)
	for i := range devs {
		c := DeviceCode(o.Tenant, i)
		k, err := keys.ParsePrivateKeyPEM([]byte(st.Keys[c]))
		if err != nil {
			return nil, fmt.Errorf("loadgen: provision: key of %s: %w", c, err)
		}
		devs[i] = Device{Code: c, Key: k}
	}
	return devs, nil
}

// DeviceTokens signs a device token (the MQTT password) for every device,
// valid for ttl from now.
func DeviceTokens(devs []Device, now time.Time, ttl time.Duration) ([]string, error) {
	out := make([]string, len(devs))
	for i, d := range devs {
		t, err := devtoken.Sign(d.Key, d.Code, now, ttl)
		if err != nil {
			return nil, fmt.Errorf("loadgen: token for %s: %w", d.Code, err)
		}
		out[i] = t
	}
	return out, nil
}

func rotate(ctx context.Context, h *hubclient.Client, code string) (string, error) {
	body := strings.NewReader(`{"revoke_old_now":true,"key_alg":"p256"}`)
	out, _, err := h.Do(ctx, "POST", "/api/v1/objects/"+url.PathEscape(code)+"/rotate", body, "application/json")
	if err != nil {
		return "", err
	}
	var reg struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal(out, &reg); err != nil {
		return "", err
	}
	if reg.PrivateKey == "" {
		return "", errors.New("the hub returned no private key")
	}
	return reg.PrivateKey, nil
}

// HubQueryable returns a Queryable that reads a device's seq values back
// from a wanwu hub's store (its Prometheus API, as HubStore does) and
// reports whether seq is among those stored since the message was
// published. It asks for that very value: the seq record has no time of its
// own, so the store orders it by arrival, and a device's latest value is not
// always its newest seq (two in-flight publishes may cross on the wire; the
// newer one, arriving first, would never show as the latest).
func HubQueryable(hub, token, tenant string) func(ctx context.Context, code string, seq int, published time.Time) (bool, error) {
	st := NewHubStore(hub, token, tenant)
	return func(ctx context.Context, code string, seq int, published time.Time) (bool, error) {
		seqs, err := st.Seqs(ctx, code, published, time.Now().Add(storeWindowSlack))
		if err != nil {
			return false, err
		}
		return slices.Contains(seqs, seq), nil
	}
}
