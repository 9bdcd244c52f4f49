package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/credential"
	"github.com/wanwu-iot/wanwu/internal/hub"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/store"
)

func init() {
	register("verify credential", verifyCredentialFlags(newFlagSet("verify credential"), &verifyOpts{}))
	register("verify log", verifyLogFlags(newFlagSet("verify log"), &verifyOpts{}))
}

type verifyOpts struct {
	dataDir, hubKey, at, head, export, origin string
	allowUnsigned                             bool
}

func verifyCommonFlags(fs *flag.FlagSet, o *verifyOpts) {
	fs.StringVar(&o.dataDir, "data-dir", config.DefaultHub().DataDir, "hub data directory (for its public key, and the log itself)")
	fs.StringVar(&o.hubKey, "hub-key", "", "the hub's signing public key, PEM (default: <data-dir>/signing.pub)")
}

func verifyCredentialFlags(fs *flag.FlagSet, o *verifyOpts) *flag.FlagSet {
	verifyCommonFlags(fs, o)
	fs.StringVar(&o.at, "at", "", "verify as of this time (RFC 3339; default now)")
	return fs
}

func verifyLogFlags(fs *flag.FlagSet, o *verifyOpts) *flag.FlagSet {
	verifyCommonFlags(fs, o)
	fs.StringVar(&o.head, "head", "", "a tree head saved earlier ('wanwu ctl audit head --out'); the log must still contain it unchanged")
	fs.StringVar(&o.export, "export", "", "verify an exported log ('wanwu ctl audit entries --out') against --head instead of a data directory")
	fs.BoolVar(&o.allowUnsigned, "allow-unsigned", false, "accept a log that holds no signed checkpoint and is given no --head (only its internal consistency is then checked)")
	return fs
}

func runVerify(e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(e.stdout, "Usage:\n  wanwu verify credential FILE [--hub-key PEM | --data-dir DIR] [--at TIME]\n  wanwu verify log [--data-dir DIR] [--hub-key PEM] [--head FILE] [--export FILE] [--allow-unsigned]")
		if len(args) == 0 {
			return usagef("credential or log?")
		}
		return nil
	}
	var o verifyOpts
	switch args[0] {
	case "credential":
		fs := verifyCredentialFlags(newFlagSet("verify credential"), &o)
		if err := parse(e, fs, interleave(fs, args[1:])); err != nil {
			return err
		}
		if err := needArgs(fs.Args(), 1, "FILE"); err != nil {
			return err
		}
		return verifyCredential(e, o, fs.Arg(0))
	case "log":
		fs := verifyLogFlags(newFlagSet("verify log"), &o)
		if err := parse(e, fs, interleave(fs, args[1:])); err != nil {
			return err
		}
		if err := needArgs(fs.Args(), 0, "no arguments"); err != nil {
			return err
		}
		return verifyLog(e, o)
	}
	return usagef("unknown verify target %q (credential or log)", args[0])
}

func (o verifyOpts) publicKey() (ed25519.PublicKey, error) {
	path := o.hubKey
	if path == "" {
		path = filepath.Join(o.dataDir, hub.SigningPubFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hub public key: %w (give --hub-key; 'wanwu ctl' reads it from /api/v1/info)", err)
	}
	pub, err := keys.ParsePublicKey(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("hub public key %s: %w", path, err)
	}
	ed, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("hub public key %s: not an Ed25519 key", path)
	}
	return ed, nil
}

func verifyCredential(e *env, o verifyOpts, file string) error {
	pub, err := o.publicKey()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(b))
	if strings.HasPrefix(token, "{") {
		// Also accept the JSON of 'ctl object credential' or a registration.
		var v struct {
			Credential string `json:"credential"`
		}
		if err := json.Unmarshal([]byte(token), &v); err != nil || v.Credential == "" {
			return fmt.Errorf("%s: JSON without a \"credential\" field", file)
		}
		token = v.Credential
	}
	at := time.Now()
	if o.at != "" {
		if at, err = time.Parse(time.RFC3339, o.at); err != nil {
			return usagef("--at: %v", err)
		}
	}
	cl, err := credential.Verify(token, pub, at)
	if err != nil {
		return fmt.Errorf("INVALID credential: %w", err)
	}
	model := ""
	if cl.ModelID != "" {
		model = cl.ModelID + "@" + cl.ModelVersion
	}
	fmt.Fprintf(e.stdout, "valid credential, signed by %s\n  code    %s\n  tenant  %s\n  kind    %s\n  number  %s\n  did     %s\n  model   %s\n  valid   %s to %s\n",
		cl.Issuer, cl.Code, cl.Tenant, cl.Kind, cl.Number, cl.Subject, model,
		cl.NotBefore.UTC().Format(time.RFC3339), cl.ExpiresAt.UTC().Format(time.RFC3339))
	fmt.Fprintln(e.stdout, "  (offline check: signature and validity; revocation needs the hub or its CRL)")
	return nil
}

func verifyLog(e *env, o verifyOpts) error {
	pub, err := o.publicKey()
	if err != nil {
		return err
	}
	var saved []byte
	if o.head != "" {
		if saved, err = os.ReadFile(o.head); err != nil {
			return err
		}
	}
	if o.export != "" {
		if saved == nil {
			return usagef("--export needs --head (the signed head the export must match)")
		}
		origin, _, _ := strings.Cut(string(saved), "\n")
		v, err := audit.NewVerifier(pub, origin)
		if err != nil {
			return err
		}
		head, err := audit.ParseHead(saved, v)
		if err != nil {
			return fmt.Errorf("TAMPERED or foreign head %s: %w", o.head, err)
		}
		f, err := os.Open(o.export)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := audit.VerifyExport(f, head); err != nil {
			return fmt.Errorf("TAMPERED: export %s does not match the signed head: %w", o.export, err)
		}
		fmt.Fprintf(e.stdout, "ok: export %s matches the signed head of size %d\n", o.export, head.Size)
		return nil
	}
	ctx := context.Background()
	dbPath := filepath.Join(o.dataDir, hub.DBFile)
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("no hub database in %s: %w", o.dataDir, err)
	}
	db, err := store.Open(ctx, dbPath, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	deployID, ok, err := db.Meta(ctx, "deployment_id")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s holds no deployment id: not a hub database", dbPath)
	}
	v, err := audit.NewVerifier(pub, hub.AuditOrigin(deployID))
	if err != nil {
		return err
	}
	var extra []audit.SignedHead
	if saved != nil {
		h, err := audit.ParseHead(saved, v)
		if err != nil {
			return fmt.Errorf("TAMPERED or foreign head %s: %w", o.head, err)
		}
		extra = append(extra, h)
	}
	rep, err := audit.VerifyDB(ctx, db.R, v, extra...)
	if err != nil {
		return fmt.Errorf("TAMPERED: audit log in %s fails verification: %w", o.dataDir, err)
	}
	// A log whose leaves, nodes and state agree proves nothing by itself:
	// whoever edits an entry can recompute the rest and delete the heads.
	// Only a signature ties the tree to the hub's key.
	if rep.Entries > 0 && rep.Heads == 0 && saved == nil {
		if !o.allowUnsigned {
			return fmt.Errorf("UNVERIFIED: the audit log in %s holds %d entries and no signed checkpoint, so a log rewritten after an edit would look the same; "+
				"give a head saved earlier with --head FILE ('wanwu ctl audit head --out'), or --allow-unsigned to accept a check of internal consistency only", o.dataDir, rep.Entries)
		}
		fmt.Fprintf(e.stdout, "warning: no signed checkpoint and no --head: only the internal consistency of %d entries is checked, not that the hub wrote them\n", rep.Entries)
	}
	fmt.Fprintf(e.stdout, "ok: %d entries, %d signed heads verified", rep.Entries, rep.Heads)
	if saved != nil {
		fmt.Fprintf(e.stdout, "; the saved head of size %d is consistent with the log", extra[0].Size)
	}
	fmt.Fprintln(e.stdout)
	if rep.Unsigned > 0 {
		fmt.Fprintf(e.stdout, "note: the last %d entries are not covered by a stored signed head yet\n", rep.Unsigned)
	}
	return nil
}
