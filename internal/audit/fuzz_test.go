package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func fuzzHead(f *testing.F, size uint64, root []byte) []byte {
	s, _, err := newSigner(testKey(1), testOrigin)
	if err != nil {
		f.Fatal(err)
	}
	h, err := signHead(s, testOrigin, size, root)
	if err != nil {
		f.Fatal(err)
	}
	return h.Note
}

func FuzzParseHead(f *testing.F) {
	f.Add(fuzzHead(f, 0, hasher.EmptyRoot()))
	f.Add(fuzzHead(f, 70, hasher.HashLeaf([]byte("x"))))
	f.Add([]byte("wanwu.hub/test\n1\nAAAA\n\n— wanwu.hub/test AAAAAAAA\n"))
	f.Add([]byte("not a note"))
	v, err := NewVerifier(testKey(1).Public().(ed25519.PublicKey), testOrigin)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		h, err := ParseHead(text, v)
		if err != nil {
			if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformedHead) {
				t.Fatalf("ParseHead error %v wraps no sentinel", err)
			}
			return
		}
		if h.Origin != testOrigin || len(h.Root) != hashSize || !bytes.Equal(h.Note, text) {
			t.Fatalf("accepted head %+v", h)
		}
		if !bytes.HasPrefix(text, []byte(checkpointBody(h.Origin, h.Size, h.Root))) {
			t.Fatalf("accepted head's text does not start with its checkpoint: %q", text)
		}
	})
}

func FuzzDecodeLeaf(f *testing.F) {
	e := Entry{Index: 5, Time: time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC), Actor: "ops", Tenant: "t1",
		Kind: "object.registered", Subject: "acme:p-0001", Data: json.RawMessage(`{"a":[1,2.5,-1e-7,"\u0001\"\\"],"b":{"c":null,"d":true}}`)}
	if err := e.normalize(); err != nil {
		f.Fatal(err)
	}
	f.Add(encodeLeaf(e))
	f.Add([]byte(`{"actor":"","data":{},"index":0,"kind":"","subject":"","tenant":"","time":"0001-01-01T00:00:00.000Z"}`))
	f.Add([]byte(`{"actor":"a","data":{},"index":1e21,"kind":"k","subject":"","tenant":"","time":"2026-01-02T03:04:05.678Z"}`))
	f.Add([]byte(`{"data":{}, "actor":"a"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeLeaf(b)
		if err != nil {
			if !errors.Is(err, ErrBadLeaf) {
				t.Fatalf("DecodeLeaf error %v does not wrap ErrBadLeaf", err)
			}
			return
		}
		if got := encodeLeaf(e); !bytes.Equal(got, b) {
			t.Fatalf("accepted leaf re-encodes differently:\n%q\n%q", b, got)
		}
		line, err := MarshalExport(e, b)
		if err != nil {
			t.Fatalf("MarshalExport of a decoded leaf: %v", err)
		}
		e2, leaf, err := ParseExport(line)
		if err != nil || !bytes.Equal(leaf, b) || !sameEntry(e, e2) {
			t.Fatalf("export round trip: %v\n%s", err, line)
		}
	})
}

func FuzzParseExport(f *testing.F) {
	e := Entry{Index: 0, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: "ops", Kind: "token.created",
		Data: json.RawMessage(`{"name":"ci"}`)}
	if err := e.normalize(); err != nil {
		f.Fatal(err)
	}
	line, err := MarshalExport(e, encodeLeaf(e))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(line)
	f.Add([]byte(`{"index":0,"leaf":"e30="}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, leaf, err := ParseExport(line)
		if err != nil {
			return
		}
		if got := encodeLeaf(e); !bytes.Equal(got, leaf) {
			t.Fatalf("accepted export line's entry does not encode to its leaf")
		}
	})
}
