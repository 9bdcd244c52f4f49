package adapter

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

// startIntake runs an Intake over a real bus, stores and pipeline.
func startIntake(t *testing.T, queue int) (*Intake, *pipeline.Pipeline, *tsdb.Store) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	b, err := bus.Start(ctx, bus.Options{StoreDir: filepath.Join(dir, "nats"), Sync: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := tsdb.Open(tsdb.Options{Dir: filepath.Join(dir, "tsdb"), NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := eventstore.Open(ctx, filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(pipeline.Options{Bus: b, TSDB: ts, Events: ev})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	in := NewIntake(IntakeOptions{Decoder: ingest.NewDecoder(ingest.Options{MaxPayload: 256}), Pipeline: p, DeadLetterQueue: queue})
	in.Start()
	t.Cleanup(func() {
		if err := in.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := p.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		ts.Close()
		ev.Close()
		b.Shutdown(ctx)
	})
	return in, p, ts
}

func upload(dev, payload string) *Upload {
	return &Upload{
		Device: ingest.Device{Code: "acme:" + dev, Tenant: "acme"}, Source: "test", Topic: "/t/" + dev,
		ContentType: ingest.ContentSenMLJSON, Payload: []byte(payload),
	}
}

// outcome is one Answer, waited for.
type outcome struct {
	rej  *ingest.Rejection
	kept bool
}

func acceptAndWait(t *testing.T, in *Intake, u *Upload) outcome {
	t.Helper()
	ch := make(chan outcome, 2)
	in.Accept(u, AnswerFunc(func(rej *ingest.Rejection, kept bool) { ch <- outcome{rej, kept} }))
	// The intake owns a copy of what it keeps: the caller's buffer may be
	// reused as soon as Accept returns (CoAP reads into one buffer).
	for i := range u.Payload {
		u.Payload[i] = 'X'
	}
	select {
	case o := <-ch:
		select {
		case <-ch:
			t.Fatal("answered twice")
		case <-time.After(50 * time.Millisecond):
		}
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	return outcome{}
}

// TestIntakeOnePath: the three ways in give the same verdicts, keep every
// refusal as a dead letter with the bytes the device sent, and store what
// they accept.
func TestIntakeOnePath(t *testing.T) {
	in, p, _ := startIntake(t, 16)
	now := time.Now().UnixMilli()
	cases := []struct {
		name    string
		payload string
		reason  ingest.Reason // "" accepted
	}{
		{"valid", fmt.Sprintf(`[{"n":"temperature","v":21.5,"t":%d}]`, now/1000), ""},
		{"malformed", `[{"n":"temperature","v":`, ingest.Malformed},
		{"too large", `[{"n":"x","vs":"` + strings.Repeat("a", 300) + `"}]`, ingest.TooLarge},
	}
	ways := []struct {
		name   string
		accept func(u *Upload) outcome
	}{
		{"Accept", func(u *Upload) outcome { return acceptAndWait(t, in, u) }},
		{"AcceptWait", func(u *Upload) outcome {
			rej, kept := in.AcceptWait(context.Background(), u)
			return outcome{rej, kept}
		}},
		{"AcceptNoWait", func(u *Upload) outcome {
			rej, queued := in.AcceptNoWait(u)
			if rej == nil && !queued {
				t.Error("AcceptNoWait dropped a message with room in the queue")
			}
			return outcome{rej, rej != nil}
		}},
	}
	for _, w := range ways {
		for _, c := range cases {
			t.Run(w.name+"/"+c.name, func(t *testing.T) {
				dev := strings.ReplaceAll(w.name+"-"+c.name, " ", "-")
				o := w.accept(upload(dev, c.payload))
				if c.reason == "" {
					if o.rej != nil {
						t.Fatalf("refused: %v", o.rej)
					}
					return
				}
				if o.rej == nil || o.rej.Reason != c.reason || !o.kept {
					t.Fatalf("got %+v, want %s kept", o, c.reason)
				}
				dls, err := p.DeadLetters(context.Background(), "", "acme:"+dev, 10)
				if err != nil || len(dls) != 1 {
					t.Fatalf("dead letters: %+v, %v", dls, err)
				}
				want := c.payload
				if len(want) > 256 {
					want = want[:256]
				}
				dl := dls[0]
				if string(dl.Payload) != want || dl.Reason != c.reason || dl.Source != "test" || dl.Topic != "/t/"+dev || dl.ContentType != ingest.ContentSenMLJSON {
					t.Errorf("dead letter %+v", dl)
				}
			})
		}
	}
}

// TestIntakeDeadLetterQueueFull: a burst of refusals larger than the queue
// is kept and answered whole: the overflow is stored by the callers.
func TestIntakeDeadLetterQueueFull(t *testing.T) {
	in, p, _ := startIntake(t, 1)
	const n = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	kept := 0
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			in.Accept(upload("burst", fmt.Sprintf(`[{"bad":%d`, i)), AnswerFunc(func(rej *ingest.Rejection, k bool) {
				mu.Lock()
				if rej != nil && rej.Reason == ingest.Malformed && k {
					kept++
				}
				mu.Unlock()
				wg.Done()
			}))
		}()
	}
	wg.Wait()
	if kept != n {
		t.Fatalf("%d of %d refusals answered as kept", kept, n)
	}
	dls, err := p.DeadLetters(context.Background(), "", "acme:burst", 100)
	if err != nil || len(dls) != n {
		t.Fatalf("%d dead letters (err %v), want %d", len(dls), err, n)
	}
	seen := map[string]bool{}
	for _, dl := range dls {
		seen[string(dl.Payload)] = true
	}
	for i := 0; i < n; i++ {
		if !seen[fmt.Sprintf(`[{"bad":%d`, i)] {
			t.Errorf("refusal %d not kept", i)
		}
	}
}

// TestIntakeAfterShutdown: a refusal that arrives while the intake stops
// is still kept and answered, on the caller's goroutine.
func TestIntakeAfterShutdown(t *testing.T) {
	in, p, _ := startIntake(t, 16)
	if err := in.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	o := acceptAndWait(t, in, upload("late", `nope`))
	if o.rej == nil || !o.kept {
		t.Fatalf("got %+v", o)
	}
	dls, _ := p.DeadLetters(context.Background(), "", "acme:late", 10)
	if len(dls) != 1 || !bytes.Equal(dls[0].Payload, []byte("nope")) {
		t.Fatalf("dead letters %+v", dls)
	}
}

// answerFunc is an Exchange made of a function (AnswerFunc).
type answerFunc struct {
	Pending
	f func(rej *ingest.Rejection, kept bool)
}

func (a *answerFunc) Answer(rej *ingest.Rejection, kept bool) { a.f(rej, kept) }

// AnswerFunc lets a function be an Answer, and an Exchange.
func AnswerFunc(f func(rej *ingest.Rejection, kept bool)) Exchange { return &answerFunc{f: f} }
