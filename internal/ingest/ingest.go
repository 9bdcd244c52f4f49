package ingest

import (
	"fmt"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Kind says which value a Record carries.
type Kind uint8

// Record value kinds.
const (
	KindFloat    Kind = iota // Float: number and integer properties
	KindBool                 // Bool
	KindString               // String
	KindPosition             // Lat, Lon, and Alt when HasAlt
	KindData                 // Data: SenML vd, or compact JSON of an object or array property
	numKinds
)

func (k Kind) String() string {
	switch k {
	case KindFloat:
		return "float"
	case KindBool:
		return "bool"
	case KindString:
		return "string"
	case KindPosition:
		return "position"
	case KindData:
		return "data"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Record is one canonical property value. The cbor tags define the bus
// encoding (EncodeBatch); their numbers are part of batch format version 1.
type Record struct {
	Property string  `cbor:"1,keyasint"`
	Time     int64   `cbor:"2,keyasint"` // ms since the epoch
	Kind     Kind    `cbor:"3,keyasint,omitempty"`
	Float    float64 `cbor:"4,keyasint,omitempty"`
	Bool     bool    `cbor:"5,keyasint,omitempty"`
	String   string  `cbor:"6,keyasint,omitempty"`
	Data     []byte  `cbor:"7,keyasint,omitempty"`
	Lat      float64 `cbor:"8,keyasint,omitempty"`  // degrees
	Lon      float64 `cbor:"9,keyasint,omitempty"`  // degrees
	Alt      float64 `cbor:"10,keyasint,omitempty"` // meters
	HasAlt   bool    `cbor:"11,keyasint,omitempty"`
	// Unit is the model's unit, after conversion ("" if none); for a device
	// without a model, the unit as sent.
	Unit string `cbor:"12,keyasint,omitempty"`
}

// MessageKind says what a Message carries.
type MessageKind uint8

// Message kinds.
const (
	Telemetry MessageKind = iota // Records
	Event                        // Event and EventData
	numMessageKinds
)

func (k MessageKind) String() string {
	switch k {
	case Telemetry:
		return "telemetry"
	case Event:
		return "event"
	}
	return fmt.Sprintf("MessageKind(%d)", uint8(k))
}

// Message is one accepted device message in canonical form.
type Message struct {
	Device    string      `cbor:"1,keyasint"` // code
	Tenant    string      `cbor:"2,keyasint,omitempty"`
	Model     string      `cbor:"3,keyasint,omitempty"` // "id@version", or "" for a device without a model
	Kind      MessageKind `cbor:"4,keyasint,omitempty"`
	Event     string      `cbor:"5,keyasint,omitempty"` // event name, for events
	EventData []byte      `cbor:"6,keyasint,omitempty"` // validated event JSON (compact), for events; nil if none
	Received  int64       `cbor:"7,keyasint"`           // ms since the epoch, hub arrival
	Source    string      `cbor:"8,keyasint,omitempty"` // "mqtt", "http", "coap"
	Records   []Record    `cbor:"9,keyasint,omitempty"` // telemetry
}

// Device is what the adapter knows about the sender after authentication.
type Device struct {
	Code, Tenant string
	Model        *thingmodel.Model // nil: no model
}

// Options configure a Decoder. Zero fields take the defaults.
type Options struct {
	MaxPayload int           // bytes; default 64 KiB (PROTOCOL.md §5)
	MaxRecords int           // records (SenML) or members (JSON) per message; default 1024
	FutureSkew time.Duration // default 5 min
	MaxAge     time.Duration // default 24h, the TSDB's out-of-order window
	Now        func() time.Time

	// MappingCostLimit bounds the CEL runtime cost of one mapping
	// expression; default 100000, far above what arithmetic over a
	// payload costs and far below what stalls a core.
	MappingCostLimit uint64
	// MappingTimeout bounds the wall time of one message's mapping;
	// default 50 ms. The cost limit is what normally stops a runaway
	// expression; the deadline backs it up.
	MappingTimeout time.Duration
	// MappingCache is how many models' compiled mappings are kept;
	// default 256.
	MappingCache int
}

// Defaults for Options.
const (
	DefaultMaxPayload       = 64 << 10
	DefaultMaxRecords       = 1024
	DefaultFutureSkew       = 5 * time.Minute
	DefaultMaxAge           = 24 * time.Hour
	DefaultMappingCostLimit = 100_000
	DefaultMappingTimeout   = 50 * time.Millisecond
	DefaultMappingCache     = 256
)

func (o Options) withDefaults() Options {
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.FutureSkew <= 0 {
		o.FutureSkew = DefaultFutureSkew
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MappingCostLimit == 0 {
		o.MappingCostLimit = DefaultMappingCostLimit
	}
	if o.MappingTimeout <= 0 {
		o.MappingTimeout = DefaultMappingTimeout
	}
	if o.MappingCache <= 0 {
		o.MappingCache = DefaultMappingCache
	}
	return o
}

// Decoder decodes and validates device messages. It is safe for concurrent
// use; one Decoder serves every adapter of a process.
type Decoder struct {
	o        Options
	mappings *mappingCache
	stamps   *arrivalStamps
}

// NewDecoder returns a Decoder with o's zero fields set to the defaults.
func NewDecoder(o Options) *Decoder {
	o = o.withDefaults()
	return &Decoder{o: o, mappings: newMappingCache(o.MappingCache, o.MappingCostLimit), stamps: newArrivalStamps()}
}

// Payload formats.
type format uint8

const (
	formatSenMLJSON format = iota + 1
	formatSenMLCBOR
	formatJSON
)

// Content types, PROTOCOL.md §3.
const (
	ContentSenMLJSON = "application/senml+json"
	ContentSenMLCBOR = "application/senml+cbor"
	ContentJSON      = "application/json"
)

// CoAPContentType maps a CoAP Content-Format number (RFC 7252 §12.3, RFC
// 8428 §12.3) to the content type Telemetry and Event take: 50 JSON, 110
// SenML JSON, 112 SenML CBOR. Other numbers give a "coap/<n>" type, which
// Telemetry refuses as unsupported_format naming the number.
func CoAPContentType(cf uint16) string {
	switch cf {
	case 50:
		return ContentJSON
	case 110:
		return ContentSenMLJSON
	case 112:
		return ContentSenMLCBOR
	}
	return fmt.Sprintf("coap/%d", cf)
}

// mediaType strips parameters ("; charset=utf-8") and case from a content
// type without allocating in the common case of an exact, bare type.
func mediaType(ct string) string {
	switch ct {
	case ContentSenMLJSON, ContentSenMLCBOR, ContentJSON, "":
		return ct
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// payloadFormat picks the format from the content type or, without one, from
// the first byte (PROTOCOL.md §3).
func payloadFormat(contentType string, payload []byte) (format, *Rejection) {
	switch mt := mediaType(contentType); mt {
	case ContentSenMLJSON:
		return formatSenMLJSON, nil
	case ContentSenMLCBOR:
		return formatSenMLCBOR, nil
	case ContentJSON:
		return formatJSON, nil
	case "":
	default:
		return 0, Reject(UnsupportedFormat, "content type %q is not one of %s, %s, %s",
			truncate(contentType), ContentSenMLJSON, ContentSenMLCBOR, ContentJSON)
	}
	if len(payload) == 0 {
		return 0, Reject(Malformed, "empty payload")
	}
	// JSON may start with whitespace; CBOR arrays are 0x80-0x9f, which is
	// never whitespace.
	c := payload[0]
	for i := 1; i < len(payload) && (c == ' ' || c == '\t' || c == '\n' || c == '\r'); i++ {
		c = payload[i]
	}
	switch {
	case c == '[':
		return formatSenMLJSON, nil
	case c == '{':
		return formatJSON, nil
	case c >= 0x80 && c <= 0x9f:
		return formatSenMLCBOR, nil
	}
	return 0, Reject(UnsupportedFormat, "no content type, and the payload starts with byte 0x%02x, not '[' (SenML JSON), '{' (JSON) or a CBOR array (SenML CBOR)", c)
}

// Telemetry decodes by content type ("application/senml+json",
// "application/senml+cbor", "application/json", or "" to sniff the first
// byte per PROTOCOL.md §3), maps names to model properties, validates and
// converts units. The whole message is accepted or rejected.
func (d *Decoder) Telemetry(dev Device, contentType string, payload []byte, source string) (Message, *Rejection) {
	now := d.arrival(dev.Code)
	msg := Message{Device: dev.Code, Tenant: dev.Tenant, Kind: Telemetry, Received: now.UnixMilli(), Source: source}
	if dev.Model != nil {
		msg.Model = dev.Model.Key()
	}
	if len(payload) > d.o.MaxPayload {
		return Message{}, Reject(TooLarge, "payload is %d bytes, more than the limit of %d", len(payload), d.o.MaxPayload)
	}
	f, rej := payloadFormat(contentType, payload)
	if rej != nil {
		return Message{}, rej
	}
	var recs []Record
	switch f {
	case formatSenMLJSON, formatSenMLCBOR:
		recs, rej = d.senml(dev, f, payload, now)
	default:
		recs, rej = d.plain(dev, payload, now)
	}
	if rej != nil {
		return Message{}, rej
	}
	if rej := checkDuplicates(recs); rej != nil {
		return Message{}, rej
	}
	msg.Records = recs
	return msg, nil
}

// arrival is the time a message of the device arrived, in milliseconds
// strictly after the device's previous message (see arrivalStamps): what
// records without a time of their own are stamped with.
func (d *Decoder) arrival(device string) time.Time {
	return time.UnixMilli(d.stamps.next(device, d.o.Now()))
}

// Event validates an event payload (JSON; empty allowed when the model's
// event has no data) against the model's event schema. A device without a
// model may send any event with a well-formed name and any JSON, stored as
// sent (compacted).
func (d *Decoder) Event(dev Device, event, contentType string, payload []byte, source string) (Message, *Rejection) {
	now := d.arrival(dev.Code)
	msg := Message{Device: dev.Code, Tenant: dev.Tenant, Kind: Event, Event: event, Received: now.UnixMilli(), Source: source}
	if len(payload) > d.o.MaxPayload {
		return Message{}, Reject(TooLarge, "payload is %d bytes, more than the limit of %d", len(payload), d.o.MaxPayload)
	}
	if mt := mediaType(contentType); mt != "" && mt != ContentJSON {
		return Message{}, Reject(UnsupportedFormat, "content type %q: event data is %s", truncate(contentType), ContentJSON)
	}
	empty := len(trimSpace(payload)) == 0
	var schema *thingmodel.Schema
	if dev.Model != nil {
		msg.Model = dev.Model.Key()
		ev := dev.Model.Events[event]
		if ev == nil {
			return Message{}, Reject(UnknownProperty, "event %q is not declared by %s", truncate(event), msg.Model)
		}
		if ev.Data == nil {
			// A data-less event may still come with an empty JSON body
			// from firmware that always sends one.
			if p := string(trimSpace(payload)); !empty && p != "null" && p != "{}" {
				return Message{}, Reject(TypeMismatch, "event %s carries no data, got %d bytes", event, len(payload))
			}
			return msg, nil
		}
		if empty {
			return Message{}, Reject(TypeMismatch, "event %s needs data (%s)", event, ev.Data.Type)
		}
		schema = ev.Data
	} else {
		if !validName(event) {
			return Message{}, Reject(Malformed, "event name %q must match [a-zA-Z][a-zA-Z0-9_]{0,63}", truncate(event))
		}
		if empty {
			return msg, nil
		}
	}
	nodes, err := parseJSON(payload)
	if err != nil {
		return Message{}, jsonRejection(err)
	}
	if schema != nil {
		if rej := checkValue(event, schema, nodes, 0); rej != nil {
			return Message{}, rej
		}
	}
	msg.EventData = appendJSON(make([]byte, 0, len(payload)), nodes, 0)
	return msg, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// validName is thingmodel's affordance grammar, [a-zA-Z][a-zA-Z0-9_]{0,63},
// without a regexp on the hot path.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// checkDuplicates refuses two values for one property at one time: the store
// keeps one sample per series and time, so one would be silently lost.
func checkDuplicates(recs []Record) *Rejection {
	dup := func(r *Record) *Rejection {
		return Reject(Malformed, "%s has two values for time %s", r.Property, fmtTime(r.Time))
	}
	if len(recs) <= 32 {
		for i := range recs {
			for j := i + 1; j < len(recs); j++ {
				if recs[i].Time == recs[j].Time && recs[i].Property == recs[j].Property {
					return dup(&recs[i])
				}
			}
		}
		return nil
	}
	type key struct {
		p string
		t int64
	}
	seen := make(map[key]struct{}, len(recs))
	for i := range recs {
		k := key{recs[i].Property, recs[i].Time}
		if _, ok := seen[k]; ok {
			return dup(&recs[i])
		}
		seen[k] = struct{}{}
	}
	return nil
}

// checkTime applies the time window to a record of property name.
func (d *Decoder) checkTime(name string, ms int64, now time.Time) *Rejection {
	nowMs := now.UnixMilli()
	if ms > nowMs+d.o.FutureSkew.Milliseconds() {
		return Reject(TimeInFuture, "%s at %s is %s ahead of the hub clock (limit %v)", name, fmtTime(ms), fmtMs(ms-nowMs), d.o.FutureSkew)
	}
	if ms < nowMs-d.o.MaxAge.Milliseconds() {
		return Reject(TimeTooOld, "%s at %s is older than %v", name, fmtTime(ms), d.o.MaxAge)
	}
	return nil
}

func fmtTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.999Z07:00")
}

// fmtMs formats a positive span of milliseconds; time.Duration would
// overflow on the centuries a device with a broken clock can claim.
func fmtMs(ms int64) string {
	const year = 365.2425 * 24 * 3600 * 1000 // ms in a Gregorian year
	if ms < 100*year {
		return (time.Duration(ms) * time.Millisecond).String()
	}
	return fmt.Sprintf("%d years", int64(float64(ms)/year))
}
