package eventstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteIsIdempotentAndQueries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	evs := []Event{
		{Tenant: "acme", Device: "acme:a", Name: "overheat", Time: 1000, Data: []byte(`{"t":90}`), Received: 1001},
		{Tenant: "acme", Device: "acme:a", Name: "overheat", Time: 2000, Data: []byte(`{"t":95}`), Received: 2001},
		{Tenant: "beta", Device: "beta:b", Name: "door", Time: 1500, Received: 1501},
	}
	vals := []Value{
		{Tenant: "acme", Device: "acme:a", Property: "mode", Time: 1000, Kind: "string", Text: "auto"},
		{Tenant: "acme", Device: "acme:a", Property: "mode", Time: 3000, Kind: "string", Text: "manual"},
		{Tenant: "acme", Device: "acme:a", Property: "fw", Time: 500, Kind: "string", Text: "1.2.0"},
	}
	// A redelivered batch writes the same rows again: nothing changes.
	for i := 0; i < 2; i++ {
		if err := s.Write(ctx, evs, vals); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Events(ctx, EventFilter{Tenant: "acme"})
	if err != nil || len(got) != 2 || got[0].Time != 1000 || got[1].Time != 2000 {
		t.Fatalf("acme events = %+v, %v", got, err)
	}
	got, _ = s.Events(ctx, EventFilter{Devices: []string{"beta:b"}})
	if len(got) != 1 || got[0].Name != "door" {
		t.Errorf("beta events = %+v", got)
	}
	got, _ = s.Events(ctx, EventFilter{Start: time.UnixMilli(1500), End: time.UnixMilli(2500)})
	if len(got) != 2 {
		t.Errorf("time-filtered events = %+v", got)
	}
	got, _ = s.Events(ctx, EventFilter{Limit: 1})
	if len(got) != 1 || got[0].Time != 2000 {
		t.Errorf("limit keeps the newest: %+v", got)
	}
	latest, err := s.Latest(ctx, "acme:a")
	if err != nil || len(latest) != 2 || latest[0].Property != "fw" || latest[1].Text != "manual" {
		t.Errorf("latest = %+v, %v", latest, err)
	}
	rng, _ := s.Range(ctx, "acme:a", "mode", time.UnixMilli(0), time.UnixMilli(5000), 0)
	if len(rng) != 2 || rng[0].Text != "auto" {
		t.Errorf("range = %+v", rng)
	}
	s.Close()
	// Durable across reopen.
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := s.Events(ctx, EventFilter{}); len(got) != 3 {
		t.Errorf("after reopen: %d events", len(got))
	}
}
