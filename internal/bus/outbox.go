package bus

// Outboxes: at an edge, the streams that hold what waits for the hub, one
// per forwarding class.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// outboxStream prefixes the stream of one forwarding class
	// ("FWD_ALARM"); outboxSubject the subject it holds ("wanwu.fwd.alarm").
	outboxStream  = "FWD_"
	outboxSubject = "wanwu.fwd."
	// outboxSourceHeader carries the highest ingest-log sequence whose
	// messages an outbox message holds, so that a forwarder restarted
	// between appending and committing its cursor appends nothing twice.
	outboxSourceHeader = "Wanwu-Ingest-Seq"
)

// Outbox is the stream of one forwarding class: messages appended in order,
// each with its own sequence (the class's sequence, which the hub
// acknowledges), removed once the hub has them.
type Outbox struct {
	b       *Bus
	name    string
	stream  string
	subject string
}

// ErrOutboxEmpty is returned by Outbox.Last for an outbox that never held a
// message.
var ErrOutboxEmpty = errors.New("bus: outbox empty")

// Outbox opens (creating if needed) the outbox of a forwarding class; class
// is a lower-case word ("alarm", "telemetry").
func (b *Bus) Outbox(ctx context.Context, class string) (*Outbox, error) {
	if class == "" || strings.ContainsAny(class, ".*> \t") {
		return nil, fmt.Errorf("bus: outbox class %q is not one token", class)
	}
	o := &Outbox{b: b, name: class, stream: outboxStream + strings.ToUpper(class), subject: outboxSubject + class}
	if _, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        o.stream,
		Description: "what waits to be forwarded to the hub, class " + class,
		Subjects:    []string{o.subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		AllowDirect: true,
	}); err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", o.stream, err)
	}
	return o, nil
}

// Append stores one message whose content came from the ingest log up to
// sequence source, and returns its outbox sequence once it is durable.
func (o *Outbox) Append(ctx context.Context, source uint64, data []byte) (uint64, error) {
	msg := nats.NewMsg(o.subject)
	msg.Data = data
	msg.Header.Set(outboxSourceHeader, strconv.FormatUint(source, 10))
	ack, err := o.b.publish(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("bus: outbox %s: %w", o.name, err)
	}
	return ack.Sequence, nil
}

// OutboxState is what an outbox holds.
type OutboxState struct {
	First, Last uint64 // sequences of the oldest and newest held; First > Last when empty
	Messages    uint64
	Bytes       uint64
	// Oldest is when the oldest message held was stored (zero when empty).
	Oldest time.Time
}

// State reports what the outbox holds.
func (o *Outbox) State(ctx context.Context) (OutboxState, error) {
	// Looking the stream up fetches its info: one request, not two.
	s, err := o.b.js.Stream(ctx, o.stream)
	if err != nil {
		return OutboxState{}, fmt.Errorf("bus: outbox %s: %w", o.name, err)
	}
	st := s.CachedInfo().State
	out := OutboxState{First: st.FirstSeq, Last: st.LastSeq, Messages: st.Msgs, Bytes: st.Bytes}
	if st.Msgs > 0 {
		out.Oldest = st.FirstTime
	}
	return out, nil
}

// Last returns the sequence of the newest message the outbox ever held and
// the ingest-log sequence it came from (ErrOutboxEmpty when none is held:
// then seq is the last sequence it had, 0 for a new outbox).
func (o *Outbox) Last(ctx context.Context) (seq, source uint64, err error) {
	s, err := o.b.js.Stream(ctx, o.stream)
	if err != nil {
		return 0, 0, fmt.Errorf("bus: outbox %s: %w", o.name, err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, o.subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		info, ierr := s.Info(ctx)
		if ierr != nil {
			return 0, 0, fmt.Errorf("bus: outbox %s: %w", o.name, ierr)
		}
		return info.State.LastSeq, 0, ErrOutboxEmpty
	}
	if err != nil {
		return 0, 0, fmt.Errorf("bus: outbox %s: %w", o.name, err)
	}
	source, _ = strconv.ParseUint(msg.Header.Get(outboxSourceHeader), 10, 64)
	return msg.Sequence, source, nil
}

// Get returns the message of sequence seq (jetstream.ErrMsgNotFound when it
// is not held) and when it was stored.
func (o *Outbox) Get(ctx context.Context, seq uint64) ([]byte, time.Time, error) {
	s, err := o.b.js.Stream(ctx, o.stream)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("bus: outbox %s: %w", o.name, err)
	}
	msg, err := s.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, time.Time{}, ErrOutboxGone
		}
		return nil, time.Time{}, fmt.Errorf("bus: outbox %s seq %d: %w", o.name, seq, err)
	}
	return msg.Data, msg.Time, nil
}

// ErrOutboxGone is returned by Get for a sequence the outbox does not hold.
var ErrOutboxGone = errors.New("bus: outbox message not held")

// Read calls fn with the messages from sequence from on, in order, while
// fn returns true and at most max of them; it returns the sequence of the
// last one given to fn (from-1 when none).
func (o *Outbox) Read(ctx context.Context, from uint64, max int, fn func(seq uint64, data []byte) bool) (uint64, error) {
	reached := from - 1
	s, err := o.b.js.Stream(ctx, o.stream)
	if err != nil {
		return reached, fmt.Errorf("bus: outbox %s: %w", o.name, err)
	}
	last := s.CachedInfo().State.LastSeq
	for n := 0; n < max && reached < last; n++ {
		msg, err := s.GetMsg(ctx, reached+1, jetstream.WithGetMsgSubject(o.subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return reached, fmt.Errorf("bus: outbox %s seq %d: %w", o.name, reached+1, err)
		}
		// GetMsg with a subject returns the next message at or after the
		// sequence: the ones between were removed.
		if !fn(msg.Sequence, msg.Data) {
			break
		}
		reached = msg.Sequence
	}
	return reached, nil
}

// Remove drops the messages through sequence seq (the hub has them, or a
// quota policy reduced them).
func (o *Outbox) Remove(ctx context.Context, through uint64) error {
	s, err := o.b.js.Stream(ctx, o.stream)
	if err != nil {
		return fmt.Errorf("bus: outbox %s: %w", o.name, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(through+1)); err != nil {
		return fmt.Errorf("bus: outbox %s: remove through %d: %w", o.name, through, err)
	}
	return nil
}
