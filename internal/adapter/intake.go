package adapter

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
)

// Upload is one message as a device sent it, after its adapter
// authenticated the device and authorized the topic or path.
type Upload struct {
	Device      ingest.Device
	Source      string // the adapter's name: "mqtt", "coap", "http"
	Topic       string // the topic or path it was sent to, for the dead letter
	Event       string // the event's name; "" for telemetry
	ContentType string
	Payload     []byte // read only; Intake copies what outlives the call
}

// Answer is an adapter's pending reply to one upload. Intake calls Answer
// exactly once: rej nil when the message is durable; otherwise the reason
// it was refused, and kept when it was stored as a dead letter (the device
// need not send it again) rather than refused for the hub's own trouble (a
// full disk, an unavailable store: the device should send it again later).
// It may run on any goroutine and must not block.
type Answer interface {
	Answer(rej *ingest.Rejection, kept bool)
}

// Exchange is an adapter's per-message record for Accept: an Answer that
// embeds Pending, so that handing the message to the pipeline allocates
// nothing more than the record itself.
type Exchange interface {
	Answer
	pending() *Pending
}

// Pending is what Accept keeps of an upload while the pipeline makes it
// durable; embed it in the adapter's per-message record.
type Pending struct {
	in     *Intake
	a      Answer
	device string
}

func (p *Pending) pending() *Pending { return p }

// Durable is the pipeline's answer (pipeline.Completion).
func (p *Pending) Durable(err error) {
	if err != nil {
		p.a.Answer(p.in.notDurable(p.device, err), false)
		return
	}
	p.a.Answer(nil, false)
}

// IntakeOptions configure an Intake.
type IntakeOptions struct {
	Decoder  *ingest.Decoder
	Pipeline *pipeline.Pipeline
	Logger   *slog.Logger
	// Presence hears of every upload (its device was seen); nil: none.
	Presence Presence
	// DeadLetterQueue bounds the refusals waiting to be stored as dead
	// letters off the adapters' reading goroutines; when it is full,
	// Accept stores the next one itself, which slows down only the
	// connection sending them. Default 1024.
	DeadLetterQueue int
}

// Intake is the one accept path of every adapter: it decodes and validates
// what a device sent, keeps a refusal as a dead letter so that nothing a
// device sent is lost, hands an accepted message to the pipeline, and turns
// the pipeline's answer into the device's. One Intake serves every adapter
// of a role. Start it before the adapters and shut it down after them.
type Intake struct {
	dec   *ingest.Decoder
	pipe  *pipeline.Pipeline
	log   *slog.Logger
	pres  Presence
	queue chan refusal
	g     Group // the dead-letter goroutine

	mu      sync.RWMutex
	stopped bool
}

// refusal is a dead letter waiting to be stored, and who waits for it.
type refusal struct {
	dl  pipeline.DeadLetter
	rej *ingest.Rejection
	a   Answer
}

// deadLetterTimeout bounds the wait for the bus to store one dead letter.
const deadLetterTimeout = 5 * time.Second

// NewIntake returns an Intake that has not started.
func NewIntake(o IntakeOptions) *Intake {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DeadLetterQueue <= 0 {
		o.DeadLetterQueue = 1024
	}
	return &Intake{dec: o.Decoder, pipe: o.Pipeline, log: o.Logger, pres: o.Presence, queue: make(chan refusal, o.DeadLetterQueue)}
}

// Decoder is the decoder the Intake validates with (adapters read its
// limits).
func (in *Intake) Decoder() *ingest.Decoder { return in.dec }

// Start starts the goroutine that stores dead letters for Accept.
func (in *Intake) Start() {
	in.g.Go(func() {
		for r := range in.queue {
			in.keep(r.dl)
			r.a.Answer(r.rej, true)
		}
	})
}

// Shutdown stores the dead letters still queued, answers their uploads and
// waits for the goroutine; call it once the adapters stopped.
func (in *Intake) Shutdown(ctx context.Context) error {
	in.mu.Lock()
	if !in.stopped {
		in.stopped = true
		close(in.queue)
	}
	in.mu.Unlock()
	return in.g.Wait(ctx)
}

// Accept takes an upload whose device waits for the answer without
// blocking the connection: a refusal is answered once it is kept as a dead
// letter, an accepted message once the pipeline made it durable.
func (in *Intake) Accept(u *Upload, a Exchange) {
	msg, rej := in.decode(u)
	if rej != nil {
		dl := in.deadLetter(u, rej)
		in.mu.RLock()
		if !in.stopped {
			select {
			case in.queue <- refusal{dl, rej, a}:
				in.mu.RUnlock()
				return
			default: // full: store it on this goroutine
			}
		}
		in.mu.RUnlock()
		in.keep(dl)
		a.Answer(rej, true)
		return
	}
	p := a.pending()
	p.in, p.a, p.device = in, a, u.Device.Code
	in.pipe.SubmitAsync(msg, p)
}

// AcceptWait is Accept for a caller that waits for the answer (an HTTP
// request, a blockwise CoAP transfer).
func (in *Intake) AcceptWait(ctx context.Context, u *Upload) (rej *ingest.Rejection, kept bool) {
	msg, rej := in.decode(u)
	if rej != nil {
		in.keepCtx(ctx, in.deadLetter(u, rej))
		return rej, true
	}
	if err := in.pipe.Submit(ctx, msg); err != nil {
		return in.notDurable(u.Device.Code, err), false
	}
	return nil, false
}

// AcceptNoWait takes a best-effort (QoS 0) upload: a refusal is kept as a
// dead letter before it returns; an accepted message is queued without
// waiting, or dropped (queued false) when the pipeline is full.
func (in *Intake) AcceptNoWait(u *Upload) (rej *ingest.Rejection, queued bool) {
	msg, rej := in.decode(u)
	if rej != nil {
		in.keep(in.deadLetter(u, rej))
		return rej, false
	}
	return nil, in.pipe.SubmitNoWait(msg)
}

// Keep stores, as a dead letter, an upload its adapter refused itself (a
// twin report or command result the service refused), waiting for the bus.
func (in *Intake) Keep(u *Upload, rej *ingest.Rejection) {
	in.keep(in.deadLetter(u, rej))
}

func (in *Intake) decode(u *Upload) (ingest.Message, *ingest.Rejection) {
	if in.pres != nil {
		in.pres.Seen(u.Device.Code, u.Device.Tenant, u.Source)
	}
	if max := in.dec.MaxPayload(); len(u.Payload) > max {
		return ingest.Message{}, ingest.Reject(ingest.TooLarge, "payload of %d bytes over the limit of %d", len(u.Payload), max)
	}
	if u.Event != "" {
		return in.dec.Event(u.Device, u.Event, u.ContentType, u.Payload, u.Source)
	}
	return in.dec.Telemetry(u.Device, u.ContentType, u.Payload, u.Source)
}

// deadLetter is the refused upload as the dead-letter stream keeps it, with
// its own copy of the payload (at most the size limit).
func (in *Intake) deadLetter(u *Upload, rej *ingest.Rejection) pipeline.DeadLetter {
	p := u.Payload
	if max := in.dec.MaxPayload(); len(p) > max {
		p = p[:max]
	}
	return pipeline.DeadLetter{
		Tenant: u.Device.Tenant, Device: u.Device.Code, Source: u.Source, Topic: u.Topic,
		ContentType: u.ContentType, Reason: rej.Reason, Message: rej.Message,
		Payload: append([]byte(nil), p...),
	}
}

func (in *Intake) keep(dl pipeline.DeadLetter) {
	ctx, cancel := context.WithTimeout(context.Background(), deadLetterTimeout)
	defer cancel()
	in.keepCtx(ctx, dl)
}

func (in *Intake) keepCtx(ctx context.Context, dl pipeline.DeadLetter) {
	if err := in.pipe.Reject(ctx, dl); err != nil {
		in.log.Warn("dead letter not stored", "device", dl.Device, "source", dl.Source, "err", err)
	}
}

// notDurable is the device's answer when the pipeline could not make a
// message durable.
func (in *Intake) notDurable(device string, err error) *ingest.Rejection {
	rej := ingest.Durability(err)
	if rej.Reason != ingest.StorageFull { // the disk guard logs that once
		in.log.Warn("ingest not durable; refusing", "device", device, "err", err)
	}
	return rej
}
