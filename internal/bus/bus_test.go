package bus

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
	unsub, err := b.CommandEvents().Subscribe("acme", func(e []byte) { ch <- string(e) })
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
		if err := b.CommandEvents().Publish(ctx, p.tenant, p.id, p.eid, []byte(p.data)); err != nil {
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

// TestStreamPersistModes: the streams that hold data only the bus has
// (INGEST, DEADLETTER) are synced per message under the sync policy; those
// copied from the metadata database (AUDIT, COMMANDS) are persisted
// asynchronously, and a data directory whose streams predate that keeps
// them as they are (JetStream cannot change a stream's persist mode).
func TestStreamPersistModes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	modes := func(b *Bus) map[string]jetstream.PersistModeType {
		t.Helper()
		out := map[string]jetstream.PersistModeType{}
		for _, name := range []string{ingestStream, deadStream, commandStream, auditStream} {
			s, err := b.js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = s.CachedInfo().Config.PersistMode
		}
		return out
	}
	b, err := Start(ctx, Options{StoreDir: dir, ServerName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]jetstream.PersistModeType{ingestStream: jetstream.DefaultPersistMode, deadStream: jetstream.DefaultPersistMode,
		commandStream: jetstream.AsyncPersistMode, auditStream: jetstream.AsyncPersistMode}
	if got := modes(b); !maps.Equal(got, want) {
		t.Fatalf("persist modes %v, want %v", got, want)
	}
	// As a hub from before would have left it: COMMANDS synced per message.
	if err := b.js.DeleteStream(ctx, commandStream); err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: commandStream, Subjects: []string{commandSubject + ".>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	b.Shutdown(ctx)
	b, err = Start(ctx, Options{StoreDir: dir, ServerName: "test"})
	if err != nil {
		t.Fatalf("restart on a data directory with a synced COMMANDS stream: %v", err)
	}
	defer b.Shutdown(ctx)
	want[commandStream] = jetstream.DefaultPersistMode
	if got := modes(b); !maps.Equal(got, want) {
		t.Fatalf("after restart: persist modes %v, want %v", got, want)
	}
	s, err := b.js.Stream(ctx, commandStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Duplicates; got != time.Hour {
		t.Fatalf("the rest of COMMANDS' configuration was not applied: duplicates window %v", got)
	}
}
