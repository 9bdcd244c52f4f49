package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// ctlClaimUse plays the device side of zero-touch provisioning: it makes a
// key pair (or uses one), sends a CSR with the claim token, and saves the
// identity the hub returns.
func ctlClaimUse(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	claim := fs.String("claim", "", "the claim token (wwc_...); default $WANWU_CLAIM")
	id := fs.String("id", "", "local id to ask for (default: derived from the key)")
	alg := fs.String("key-alg", "p256", "key algorithm: p256 or ed25519")
	keyFile := fs.String("key", "", "use this PKCS#8 PEM private key instead of making one")
	out := fs.String("out", "", "directory for cert.pem, key.pem, ca.pem, credential.jwt (required)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		if *out == "" {
			return usagef("--out DIR is required (the private key must be kept)")
		}
		secret := *claim
		if secret == "" {
			secret = os.Getenv("WANWU_CLAIM")
		}
		if secret == "" {
			return usagef("--claim TOKEN is required")
		}
		var keyPEM []byte
		var err error
		var priv any
		if *keyFile != "" {
			if keyPEM, err = os.ReadFile(*keyFile); err != nil {
				return err
			}
			k, err := keys.ParsePrivateKeyPEM(keyPEM)
			if err != nil {
				return err
			}
			priv = k
		} else {
			a, err := keys.ParseAlg(*alg)
			if err != nil {
				return usagef("%v", err)
			}
			k, err := keys.Generate(a)
			if err != nil {
				return err
			}
			if keyPEM, err = keys.MarshalPrivateKeyPEM(k); err != nil {
				return err
			}
			priv = k
		}
		csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: *id}}, priv)
		if err != nil {
			return fmt.Errorf("make CSR: %w", err)
		}
		csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
		body, _ := json.Marshal(map[string]string{"csr": string(csrPEM), "id": *id})
		// The claim token, not an API token, authenticates this request.
		dev := ctlConn{Client: hubclient.New(c.Base, secret)}
		raw, status, err := dev.do("POST", "/api/v1/claim", bytes.NewReader(body), "application/json")
		if err != nil {
			return err
		}
		if status != http.StatusCreated {
			return fmt.Errorf("hub answered %d", status)
		}
		return saveRegistration(e, *out, raw, keyPEM)
	}
}

func ctlAuditHead(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	out := fs.String("out", "", "save the signed checkpoint to this file (for 'wanwu verify log --head')")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		var h struct {
			Origin     string `json:"origin"`
			Size       uint64 `json:"size"`
			Checkpoint string `json:"checkpoint"`
		}
		if _, err := c.json("GET", "/api/v1/audit/head", nil, &h); err != nil {
			return err
		}
		if *out != "" {
			if err := os.WriteFile(*out, []byte(h.Checkpoint), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "saved tree head of size %d to %s\n", h.Size, *out)
			return nil
		}
		_, err := fmt.Fprint(e.stdout, h.Checkpoint)
		return err
	}
}

func ctlAuditEntries(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	from := fs.Uint64("from", 0, "first index")
	to := fs.Uint64("to", 0, "end index, exclusive (default: the whole log)")
	out := fs.String("out", "", "write JSON lines to this file instead of stdout")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		var buf bytes.Buffer
		next := *from
		for {
			path := fmt.Sprintf("/api/v1/audit/entries?from=%d", next)
			if *to > 0 {
				path += fmt.Sprintf("&to=%d", *to)
			}
			raw, _, err := c.do("GET", path, nil, "")
			if err != nil {
				return err
			}
			if len(raw) == 0 {
				break
			}
			buf.Write(raw)
			lines := bytes.Split(bytes.TrimSpace(raw), []byte("\n"))
			last, _, err := audit.ParseExport(lines[len(lines)-1])
			if err != nil {
				return fmt.Errorf("hub sent a bad entry: %w", err)
			}
			next = last.Index + 1
			if *to > 0 && next >= *to {
				break
			}
		}
		if *out != "" {
			return os.WriteFile(*out, buf.Bytes(), 0o644)
		}
		_, err := e.stdout.Write(buf.Bytes())
		return err
	}
}

func ctlAuditProve(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	hubKey := fs.String("hub-key", "", "the hub's signing public key (PEM); default: fetched from the hub's /api/v1/info")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "INDEX"); err != nil {
			return err
		}
		var index uint64
		if _, err := fmt.Sscan(args[0], &index); err != nil {
			return usagef("INDEX %q is not a number", args[0])
		}
		var info struct {
			AuditOrigin string `json:"audit_origin"`
			SigningKey  string `json:"signing_key"`
		}
		if _, err := c.json("GET", "/api/v1/info", nil, &info); err != nil {
			return err
		}
		keyPEM := []byte(info.SigningKey)
		if *hubKey != "" {
			b, err := os.ReadFile(*hubKey)
			if err != nil {
				return err
			}
			keyPEM = b
		}
		v, err := noteVerifier(keyPEM, info.AuditOrigin)
		if err != nil {
			return err
		}
		var h struct {
			Checkpoint string `json:"checkpoint"`
		}
		if _, err := c.json("GET", "/api/v1/audit/head", nil, &h); err != nil {
			return err
		}
		head, err := audit.ParseHead([]byte(h.Checkpoint), v)
		if err != nil {
			return err
		}
		raw, _, err := c.do("GET", fmt.Sprintf("/api/v1/audit/entries?from=%d&to=%d", index, index+1), nil, "")
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			return fmt.Errorf("entry %d is not visible to this token or beyond the log", index)
		}
		entry, leaf, err := audit.ParseExport(bytes.TrimSpace(raw))
		if err != nil {
			return err
		}
		var p struct {
			Hashes [][]byte `json:"hashes"`
		}
		if _, err := c.json("GET", fmt.Sprintf("/api/v1/audit/proof/inclusion?index=%d&size=%d", index, head.Size), nil, &p); err != nil {
			return err
		}
		if err := audit.VerifyInclusion(leaf, index, head, p.Hashes); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "entry %d (%s %s by %s) is included in the signed tree of size %d\n",
			index, entry.Kind, entry.Subject, entry.Actor, head.Size)
		return nil
	}
}

// noteVerifier builds the checkpoint verifier from a PEM public key.
func noteVerifier(keyPEM []byte, origin string) (note.Verifier, error) {
	pub, err := keys.ParsePublicKey(strings.TrimSpace(string(keyPEM)))
	if err != nil {
		return nil, fmt.Errorf("hub key: %w", err)
	}
	edpub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("hub key: not an Ed25519 key")
	}
	return audit.NewVerifier(edpub, origin)
}

// ctlDeviceToken signs a device token locally; the key never leaves the machine.
func ctlDeviceToken(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	keyFile := fs.String("key", "", "the device's private key (PKCS#8 PEM), e.g. pump-0001/key.pem (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid (at most 24h)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		if *keyFile == "" {
			return usagef("--key FILE is required")
		}
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return err
		}
		k, err := keys.ParsePrivateKeyPEM(b)
		if err != nil {
			return fmt.Errorf("%s: %w", *keyFile, err)
		}
		tok, err := devtoken.Sign(k, args[0], time.Now(), *ttl)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(e.stdout, tok)
		return err
	}
}

// claimRow is what ctl shows of a claim token (the API's registry.Claim).
type claimRow struct {
	ID            string    `json:"id"`
	Tenant        string    `json:"tenant"`
	Name          string    `json:"name"`
	MaxUses       int       `json:"max_uses"`
	Uses          int       `json:"uses"`
	ExpiresAt     time.Time `json:"expires_at"`
	LastUsedAt    time.Time `json:"last_used_at"`
	State         string    `json:"state"` // active, expired, used_up, revoked: by the hub's clock
	RevokedReason string    `json:"revoked_reason"`
}

func ctlClaimList(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		var out struct {
			Claims []claimRow `json:"claims"`
		}
		if done, err := getData(e, c, "/api/v1/claims", *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Claims))
		for _, cl := range out.Claims {
			last := "never"
			if !cl.LastUsedAt.IsZero() {
				last = timeText(cl.LastUsedAt)
			}
			rows = append(rows, []string{cl.ID, cl.Tenant, cl.Name, fmt.Sprintf("%d/%d", cl.Uses, cl.MaxUses),
				timeText(cl.ExpiresAt), last, strings.ReplaceAll(cl.State, "_", " ")})
		}
		return table(e.stdout, []string{"ID", "TENANT", "NAME", "USES", "EXPIRES", "LAST USED", "STATE"}, rows)
	}
}

func ctlClaimRevoke(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	reason := fs.String("reason", "", "why (recorded in the audit log)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID"); err != nil {
			return err
		}
		var out claimRow
		if _, err := c.json("POST", "/api/v1/claims/"+url.PathEscape(args[0])+"/revoke", map[string]string{"reason": *reason}, &out); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "claim %s revoked (%d of %d uses made)\n", out.ID, out.Uses, out.MaxUses)
		return nil
	}
}
