package bus

import (
	"context"
	"testing"
	"time"
)

func startBus(t *testing.T) *Bus {
	t.Helper()
	b, err := Start(context.Background(), Options{StoreDir: t.TempDir(), ServerName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	return b
}

func TestTwinAnnouncementsReachSubscribers(t *testing.T) {
	b := startBus(t)
	type got struct{ tenant, id, data string }
	ch := make(chan got, 4)
	unsub, err := b.SubscribeTwinAnnouncements(func(tenant, id string, data []byte) { ch <- got{tenant, id, string(data)} })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	if err := b.AnnounceTwin("acme", "pump-1", []byte(`{"version":3}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-ch:
		if g != (got{"acme", "pump-1", `{"version":3}`}) {
			t.Fatalf("announcement = %+v", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no announcement within 5s")
	}
}

func TestCommandEventsFilterByTenantAndDeduplicate(t *testing.T) {
	b := startBus(t)
	ctx := context.Background()
	ch := make(chan string, 8)
	unsub, err := b.SubscribeCommandEvents("acme", func(e []byte) { ch <- string(e) })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	for _, p := range []struct{ tenant, id, eid, data string }{
		{"other", "x", "e0", "other"},
		{"acme", "pump-1", "e1", "first"},
		{"acme", "pump-1", "e1", "first again"},
		{"acme", "pump-2", "e2", "second"},
	} {
		if err := b.PublishCommandEvent(ctx, p.tenant, p.id, p.eid, []byte(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	// Core subscribers see every publish; the stream keeps one per event id.
	var seen []string
	for len(seen) < 3 {
		select {
		case e := <-ch:
			seen = append(seen, e)
		case <-time.After(5 * time.Second):
			t.Fatalf("events seen %q, want 3", seen)
		}
	}
	if seen[0] != "first" || seen[2] != "second" {
		t.Fatalf("events %q", seen)
	}
	s, err := b.js.Stream(ctx, commandStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("stream holds %d events, want 3 (the repeated id dropped)", info.State.Msgs)
	}
}
