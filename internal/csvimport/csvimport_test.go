package csvimport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// Fixed keys so that test files, like fuzz corpus files, are stable text.
const (
	p256DID    = "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169"
	ed25519DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
)

func TestParseGood(t *testing.T) {
	p256, err := keys.ParseDID(p256DID)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := keys.SPKI(p256)
	pemKey, _ := keys.MarshalPublicKeyPEM(p256)
	ed, _ := keys.ParseDID(ed25519DID)

	file := "\ufeffCode, Kind ,MODEL,path,tags,edge,public_key,key_alg\r\n" +
		"acme:pump-1,,acme:pump@1.0.0,plant-1/area-a/line-3,floor=3;wing = north;,acme:edge-1,,\r\n" +
		"acme:pump-2,device,,,,,,ed25519\r\n" +
		"\r\n" +
		"acme:gw-1,Gateway,,,,,\"" + string(pemKey) + "\",p256\r\n" +
		"acme:cam-1,device,,,,,\"" + base64.StdEncoding.EncodeToString(der) + "\",\r\n" +
		",,,,,,,\r\n" +
		"acme:edge-1,edge,,plant-1,,,  " + ed25519DID + "  ,\r\n" +
		"acme:hall-1,asset,,plant-1/hall-1,rated_kw=3.5,,,\r\n"
	rows, bad, err := Parse(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 0 {
		t.Fatalf("row errors: %v", bad)
	}
	want := []Row{
		{Line: 2, Code: "acme:pump-1", Kind: "device", ModelID: "acme:pump", ModelVersion: "1.0.0",
			Path: []string{"plant-1", "area-a", "line-3"}, Tags: map[string]string{"floor": "3", "wing": "north"},
			Edge: "acme:edge-1", KeyAlg: keys.P256},
		{Line: 3, Code: "acme:pump-2", Kind: "device", KeyAlg: keys.Ed25519},
		{Line: 5, Code: "acme:gw-1", Kind: "gateway", PublicKey: p256, KeyAlg: keys.P256},
		// The PEM key spans lines 5–9, so the next record starts on line 10.
		{Line: 10, Code: "acme:cam-1", Kind: "device", PublicKey: p256, KeyAlg: keys.P256},
		{Line: 12, Code: "acme:edge-1", Kind: "edge", Path: []string{"plant-1"}, PublicKey: ed, KeyAlg: keys.Ed25519},
		{Line: 13, Code: "acme:hall-1", Kind: "asset", Path: []string{"plant-1", "hall-1"}, Tags: map[string]string{"rated_kw": "3.5"}},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i := range want {
		got, w := rows[i], want[i]
		gotFP, wantFP := "", ""
		if got.PublicKey != nil {
			gotFP = keys.Fingerprint(got.PublicKey)
		}
		if w.PublicKey != nil {
			wantFP = keys.Fingerprint(w.PublicKey)
		}
		got.PublicKey, w.PublicKey = nil, nil
		if !reflect.DeepEqual(got, w) || gotFP != wantFP {
			t.Errorf("row %d:\n got %+v (key %s)\nwant %+v (key %s)", i, got, gotFP, w, wantFP)
		}
	}
}

// TestParseNetwork: the network column names a link profile, in any case;
// an unknown one is refused with the valid names; files without the column
// (written before it existed) still import, with no network.
func TestParseNetwork(t *testing.T) {
	tests := []struct {
		name, file string
		want       []string // networks of the good rows
		bad        string   // reason of the one bad row, "" for none
	}{
		{"no column", "code,kind\nacme:a,device\n", []string{""}, ""},
		{"empty", "code,network\nacme:a,\n", []string{""}, ""},
		{"each profile", "code,network\nacme:a,nb-iot\nacme:b,LTE-Cat1\nacme:c,5g-redcap\nacme:d,wlan\nacme:e, ethernet \n",
			[]string{"nb-iot", "lte-cat1", "5g-redcap", "wlan", "ethernet"}, ""},
		{"unknown", "code,network\nacme:a,lora\nacme:b,wlan\n", []string{"wlan"}, `"lora" is not a network profile; want one of nb-iot, lte-cat1, 5g-redcap, wlan, ethernet`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, bad, err := Parse(strings.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rows {
				got = append(got, r.Network)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("networks %q, want %q", got, tt.want)
			}
			switch {
			case tt.bad == "" && len(bad) != 0:
				t.Errorf("row errors %v", bad)
			case tt.bad != "" && (len(bad) != 1 || bad[0].Field != ColNetwork || bad[0].Reason != tt.bad):
				t.Errorf("row errors %+v, want one for %q: %s", bad, ColNetwork, tt.bad)
			}
		})
	}
}

func TestParseRowErrors(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKIXPublicKey(p384.Public())
	tests := []struct {
		name  string
		row   string
		field string
		msg   string
	}{
		{"no code", ",device,,,,,,", "code", "required"},
		{"bad code", "Acme:x,,,,,,,", "code", "lowercase"},
		{"bad kind", "acme:x,robot,,,,,,", "kind", `"robot"`},
		{"model without version", "acme:x,,acme:pump,,,,,", "model", "@<version>"},
		{"model bad id", "acme:x,,pump@1.0.0,,,,,", "model", "model id"},
		{"model bad version", "acme:x,,acme:pump@1.0,,,,,", "model", "MAJOR.MINOR.PATCH"},
		{"model leading zero", "acme:x,,acme:pump@1.01.0,,,,,", "model", "leading zeros"},
		{"model prerelease", "acme:x,,acme:pump@1.0.0-rc1,,,,,", "model", "number"},
		{"bad path", "acme:x,,,plant-1//line,,,,", "path", "segment 2"},
		{"tag without =", "acme:x,,,,floor,,,", "tags", "key=value"},
		{"bad tag key", "acme:x,,,,Floor=3,,,", "tags", "tag key"},
		{"bad tag value", "acme:x,,,,floor=3\x01,,,", "tags", "tag value"},
		{"duplicate tag", "acme:x,,,,a=1;a=2,,,", "tags", "twice"},
		{"bad edge", "acme:x,,,,,edge-1,,", "edge", "missing"},
		{"own edge", "acme:x,,,,,acme:x,,", "edge", "own edge"},
		{"bad key", "acme:x,,,,,,not-a-key,", "public_key", "invalid key"},
		{"unsupported key", "acme:x,,,,,," + base64.StdEncoding.EncodeToString(p384DER) + ",", "public_key", "unsupported"},
		{"bad alg", "acme:x,,,,,,,rsa", "key_alg", "p256 or ed25519"},
		{"alg disagrees", "acme:x,,,,,," + ed25519DID + ",p256", "key_alg", "public_key is ed25519"},
		{"asset with key", "acme:x,asset,,,,," + ed25519DID + ",", "public_key", "asset"},
		{"asset with alg", "acme:x,asset,,,,,,p256", "key_alg", "asset"},
		{"too few fields", "acme:x,device", "", "2 fields, but the header has 8"},
		{"too many fields", "acme:x,,,,,,,,", "", "9 fields"},
		{"bare quote", `acme:x,dev"ice,,,,,,`, "", "quote"},
	}
	header := "code,kind,model,path,tags,edge,public_key,key_alg\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := header + "acme:ok-1,,,,,,,\n" + tt.row + "\nacme:ok-2,,,,,,,\n"
			rows, bad, err := Parse(strings.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 2 || rows[0].Code != "acme:ok-1" || rows[1].Code != "acme:ok-2" || rows[1].Line != 4 {
				t.Errorf("good rows around the bad one: %+v", rows)
			}
			if len(bad) != 1 {
				t.Fatalf("row errors %v, want 1", bad)
			}
			e := bad[0]
			if e.Line != 3 || e.Field != tt.field || !strings.Contains(e.Reason, tt.msg) {
				t.Errorf("got %+v, want line 3 field %q reason containing %q", e, tt.field, tt.msg)
			}
			if !strings.HasPrefix(e.Error(), "line 3: ") {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
}

func TestParseDuplicates(t *testing.T) {
	file := "code,kind\n" +
		"acme:a,\n" +
		"acme:b,robot\n" + // bad, but still claims acme:b
		"acme:a,\n" +
		"acme:b,\n" +
		"acme:a,gateway\n"
	rows, bad, err := Parse(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Code != "acme:a" || rows[0].Line != 2 {
		t.Errorf("rows %+v", rows)
	}
	want := []RowError{
		{Line: 3, Field: "kind", Reason: `"robot" is not one of device, gateway, edge, asset`},
		{Line: 4, Field: "code", Reason: "duplicate of line 2"},
		{Line: 5, Field: "code", Reason: "duplicate of line 3"},
		{Line: 6, Field: "code", Reason: "duplicate of line 2"},
	}
	if !reflect.DeepEqual(bad, want) {
		t.Errorf("row errors\n got %+v\nwant %+v", bad, want)
	}
}

func TestParseHeaderErrors(t *testing.T) {
	tests := []struct {
		name, file, msg string
	}{
		{"empty", "", "empty file"},
		{"only blank lines", "\n\n", "empty file"},
		{"unknown column", "code,colour\nacme:x,red\n", `unknown column "colour"`},
		{"no code column", "kind,model\ndevice,\n", `no "code" column`},
		{"duplicate column", "code,Kind,KIND\n", `"kind" appears twice`},
		{"empty column name", "code,,kind\n", "column 2 has no name"},
		{"bad quoting", "\"code\n", "extraneous or missing"},
	}
	for _, tt := range tests {
		rows, bad, err := Parse(strings.NewReader(tt.file))
		if !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v, want ErrHeader mentioning %q", tt.name, err, tt.msg)
		}
		if rows != nil || bad != nil {
			t.Errorf("%s: rows or errors returned with a file error", tt.name)
		}
	}
	// A header with only the code column is enough.
	rows, bad, err := Parse(strings.NewReader("code\nacme:x\n"))
	if err != nil || len(bad) != 0 || len(rows) != 1 || rows[0].Kind != KindDevice || rows[0].KeyAlg != keys.P256 {
		t.Errorf("minimal file: %+v %v %v", rows, bad, err)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk on fire")
	}
	f.n--
	return copy(p, "code\nacme:x\n"), nil
}

func TestParseReadError(t *testing.T) {
	_, _, err := Parse(&failingReader{n: 1})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
}

// repeatReader yields a header and then the same row forever, to test the
// limits without building the input in memory.
type repeatReader struct {
	header, row string
	sent        bool
	buf         []byte
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		r.buf = []byte(r.header)
	}
	for len(r.buf) < len(p) {
		r.buf = append(r.buf, r.row...)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func TestParseLimits(t *testing.T) {
	// Short rows exceed MaxRows long before MaxBytes.
	_, _, err := Parse(&repeatReader{header: "code\n", row: "acme:x\n"})
	if !errors.Is(err, ErrTooManyRows) {
		t.Errorf("many rows: err = %v", err)
	}
	// Long rows exceed MaxBytes first.
	_, _, err = Parse(&repeatReader{header: "code,tags\n", row: "acme:x," + strings.Repeat("a", 1<<20) + "\n"})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("large file: err = %v", err)
	}
	// One huge header line too.
	_, _, err = Parse(io.MultiReader(strings.NewReader("code"), &repeatReader{header: "", row: "        "}))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge header: err = %v", err)
	}
	// Exactly MaxRows rows is fine.
	var b bytes.Buffer
	b.WriteString("code\n")
	for i := range MaxRows {
		fmt.Fprintf(&b, "acme:d%d\n", i)
	}
	rows, bad, err := Parse(&b)
	if err != nil || len(rows) != MaxRows || len(bad) != 0 {
		t.Errorf("MaxRows rows: %d rows, %d errors, %v", len(rows), len(bad), err)
	}
}

func TestValidSemver(t *testing.T) {
	for v, ok := range map[string]bool{
		"0.0.0": true, "1.0.0": true, "10.20.30": true, "999999999.0.1": true,
		"": false, "1": false, "1.0": false, "1.0.0.0": false, "01.0.0": false, "1.0.0-rc.1": false,
		"1.0.0+build": false, "v1.0.0": false, "1..0": false, "1.0.x": false, "1000000000.0.0": false, "+1.0.0": false,
	} {
		if err := validSemver(v); (err == nil) != ok {
			t.Errorf("validSemver(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

func TestPEMPublicKeyInCSV(t *testing.T) {
	// A key pasted into a spreadsheet cell keeps its line breaks inside
	// quotes; make sure CRLF line endings inside the field do not break it.
	pub, _ := keys.ParseDID(p256DID)
	der, _ := keys.SPKI(pub)
	p := strings.ReplaceAll(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "\n", "\r\n")
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.UseCRLF = true
	w.Write([]string{"code", "public_key"})
	w.Write([]string{"acme:x", p})
	w.Flush()
	rows, bad, err := Parse(strings.NewReader(b.String()))
	if err != nil || len(bad) != 0 || len(rows) != 1 || keys.Fingerprint(rows[0].PublicKey) != keys.Fingerprint(pub) {
		t.Fatalf("rows %+v bad %v err %v", rows, bad, err)
	}
}

// FuzzParse checks that Parse never panics, never reports more rows plus
// errors than the file has records, and only returns rows whose code, edge,
// path and tags are valid.
func FuzzParse(f *testing.F) {
	f.Add("code,kind,model,path,tags,edge,public_key,key_alg\nacme:pump-1,device,acme:pump@1.0.0,plant-1/line-3,floor=3,acme:edge-1,,ed25519\n")
	f.Add("code\nacme:a\nacme:a\n\"acme:b\"\n")
	f.Add("code,public_key\nacme:a," + p256DID + "\nacme:b,\"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\"\n")
	f.Add("Code;Kind\nacme:a;device\n")
	f.Add("code,kind\nacme:a,\"unterminated\n")
	f.Add("\ufeffcode,tags\nacme:a,a=1;b=2;a=3\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		rows, bad, err := Parse(strings.NewReader(s))
		if err != nil {
			if rows != nil || bad != nil {
				t.Fatal("results returned alongside a file error")
			}
			return
		}
		// Count records the way Parse sees them: every Read after the header.
		cr := csv.NewReader(strings.NewReader(s))
		cr.FieldsPerRecord = -1
		records := -1
		for {
			if _, err := cr.Read(); errors.Is(err, io.EOF) {
				break
			}
			records++
		}
		if len(rows)+len(bad) > records {
			t.Fatalf("%d rows + %d errors > %d records", len(rows), len(bad), records)
		}
		lines := strings.Count(s, "\n") + 1
		codes := map[string]bool{}
		for _, r := range rows {
			if _, err := code.Parse(r.Code); err != nil {
				t.Fatalf("row with invalid code %q: %v", r.Code, err)
			}
			if codes[r.Code] {
				t.Fatalf("code %q returned twice", r.Code)
			}
			codes[r.Code] = true
			if r.Edge != "" {
				if _, err := code.Parse(r.Edge); err != nil {
					t.Fatalf("row with invalid edge %q", r.Edge)
				}
			}
			if r.Path != nil {
				if _, err := code.ParsePath(strings.Join(r.Path, "/")); err != nil {
					t.Fatalf("row with invalid path %q", r.Path)
				}
			}
			for k, v := range r.Tags {
				if code.ValidTagKey(k) != nil || code.ValidTagValue(v) != nil {
					t.Fatalf("row with invalid tag %q=%q", k, v)
				}
			}
			if r.Line < 2 || r.Line > lines {
				t.Fatalf("row line %d outside 2..%d", r.Line, lines)
			}
			if r.Kind == KindAsset && (r.PublicKey != nil || r.KeyAlg != "") {
				t.Fatal("asset with a key")
			}
			if r.Kind != KindAsset && r.KeyAlg == "" {
				t.Fatal("keyed object without an algorithm")
			}
		}
		for _, e := range bad {
			if e.Line < 2 || e.Line > lines || e.Reason == "" {
				t.Fatalf("bad row error %+v", e)
			}
		}
	})
}

// TestReaderRowLimit: a Reader yields records one at a time and stops with
// ErrTooManyRows at the record after Options.MaxRows, having yielded the
// ones before it, and keeps failing after that.
func TestReaderRowLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rows    int
		max     int
		wantErr error
	}{
		{"under the limit", 3, 5, nil},
		{"at the limit", 5, 5, nil},
		{"over the limit", 6, 5, ErrTooManyRows},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("code\n")
			for i := range tc.rows {
				fmt.Fprintf(&b, "acme:r-%d\n", i)
			}
			r, err := NewReader(strings.NewReader(b.String()), Options{MaxRows: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				row, rerr, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					if !errors.Is(err, tc.wantErr) || tc.wantErr == nil {
						t.Fatalf("after %d rows: %v, want %v", n, err, tc.wantErr)
					}
					if _, _, again := r.Next(); !errors.Is(again, tc.wantErr) {
						t.Errorf("Next after the error: %v", again)
					}
					break
				}
				if rerr != nil || row.Code != fmt.Sprintf("acme:r-%d", n) {
					t.Fatalf("row %d: %+v %v", n, row, rerr)
				}
				n++
			}
			if want := min(tc.rows, tc.max); n != want {
				t.Errorf("yielded %d rows, want %d", n, want)
			}
		})
	}
}
