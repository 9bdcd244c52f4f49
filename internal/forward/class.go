package forward

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Class is a forwarding class: what an edge holds until the hub has it, in
// outboxes of their own, forwarded most urgent first.
type Class uint8

// The classes, most urgent first.
const (
	// Alarm: events and values the model gives priority "alarm". Never
	// dropped; when its quota is full devices are refused (back-pressure).
	Alarm Class = iota
	// Control: events (by default), command results, twin reports, the
	// edge's own gap records and rollups. Never dropped; back-pressure.
	Control
	// Telemetry: property values (by default). When its quota is full the
	// oldest raw values are downsampled into per-minute rollups.
	Telemetry
	// Bulk: values and events the model gives priority "bulk" (raw
	// captures). When its quota is full the oldest are dropped.
	Bulk
	// NumClasses is how many classes there are.
	NumClasses = 4
)

var classNames = [NumClasses]string{"alarm", "control", "telemetry", "bulk"}

func (c Class) String() string {
	if c < NumClasses {
		return classNames[c]
	}
	return fmt.Sprintf("Class(%d)", uint8(c))
}

// ParseClass reads a class name.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if n == s {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("forward: %q is not a class (alarm, control, telemetry, bulk)", s)
}

// Classes lists the classes, most urgent first.
func Classes() []Class { return []Class{Alarm, Control, Telemetry, Bulk} }

func priorityClass(p string, def Class) Class {
	switch p {
	case thingmodel.PriorityAlarm:
		return Alarm
	case thingmodel.PriorityControl:
		return Control
	case thingmodel.PriorityTelemetry:
		return Telemetry
	case thingmodel.PriorityBulk:
		return Bulk
	}
	return def
}

// eventClass is the class of an event message.
func eventClass(m *ingest.Message, model *thingmodel.Model) Class {
	switch m.Event {
	case AlarmEvent:
		return Alarm
	case DatasetWindowEvent: // may wait, and may go when the quota is full (the edge keeps its copy)
		return Bulk
	}
	if model != nil {
		if ev := model.Events[m.Event]; ev != nil {
			return priorityClass(ev.Priority, Control)
		}
	}
	return Control
}

// recordClass is the class of one property value.
func recordClass(prop string, model *thingmodel.Model) Class {
	if model != nil {
		if p := model.Properties[prop]; p != nil {
			return priorityClass(p.Priority, Telemetry)
		}
	}
	return Telemetry
}

// split appends the parts of m to the classes they belong to. A telemetry
// message whose values are of several classes becomes one message per
// class (sharing m's strings; records copied).
func split(m *ingest.Message, model *thingmodel.Model, out *[NumClasses][]ingest.Message) {
	if m.Kind == ingest.Event {
		c := eventClass(m, model)
		out[c] = append(out[c], *m)
		return
	}
	if len(m.Records) == 0 {
		out[Telemetry] = append(out[Telemetry], *m)
		return
	}
	first := recordClass(m.Records[0].Property, model)
	mixed := false
	for i := 1; i < len(m.Records) && !mixed; i++ {
		mixed = recordClass(m.Records[i].Property, model) != first
	}
	if !mixed {
		out[first] = append(out[first], *m)
		return
	}
	var parts [NumClasses][]ingest.Record
	for _, r := range m.Records {
		c := recordClass(r.Property, model)
		parts[c] = append(parts[c], r)
	}
	for c, recs := range parts {
		if len(recs) > 0 {
			part := *m
			part.Records = recs
			out[c] = append(out[c], part)
		}
	}
}

// An outbox message is a sequence of ingest batches, each framed by its
// length as a uvarint: the forwarder appends one batch per class for every
// ingest batch it is added, and writes them as one outbox message.

// appendFrame appends one encoded ingest batch to an outbox message.
func appendFrame(dst, batch []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(batch)))
	return append(dst, batch...)
}

// errFrame is returned for an outbox message that is not a sequence of
// framed batches.
var errFrame = errors.New("forward: malformed outbox message")

// maxFrames bounds the batches in one outbox message.
const maxFrames = 1 << 16

// Frames calls fn with each ingest batch an outbox message holds.
func Frames(msg []byte, fn func(batch []byte) error) error {
	for n := 0; len(msg) > 0; n++ {
		if n >= maxFrames {
			return fmt.Errorf("%w: more than %d batches", errFrame, maxFrames)
		}
		l, k := binary.Uvarint(msg)
		if k <= 0 || l == 0 || l > uint64(len(msg)-k) {
			return fmt.Errorf("%w: bad frame length", errFrame)
		}
		if err := fn(msg[k : k+int(l)]); err != nil {
			return err
		}
		msg = msg[k+int(l):]
	}
	return nil
}

// Decode returns the device messages an outbox message holds.
func Decode(msg []byte) ([]ingest.Message, error) {
	var out []ingest.Message
	err := Frames(msg, func(b []byte) error {
		msgs, err := ingest.DecodeBatch(b)
		if err != nil {
			return err
		}
		out = append(out, msgs...)
		return nil
	})
	return out, err
}

// countRecords is how many values (records, or 1 per event) msgs hold.
func countRecords(msgs []ingest.Message) int {
	n := 0
	for i := range msgs {
		if msgs[i].Kind == ingest.Event {
			n++
		} else {
			n += len(msgs[i].Records)
		}
	}
	return n
}
