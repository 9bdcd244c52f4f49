package ingest

import (
	"errors"
	"fmt"
	"net/http"
)

// Reason says why a message was refused. Its string form is the reason code of
// PROTOCOL.md §2: devices, dead letters and metrics all see the same word.
type Reason string

// Reason codes, PROTOCOL.md §2.
const (
	Malformed         Reason = "malformed"          // not valid SenML / JSON / CBOR
	UnsupportedFormat Reason = "unsupported_format" // content type not understood
	TooLarge          Reason = "too_large"          // payload or record count over the limit
	UnknownProperty   Reason = "unknown_property"   // a name the thing model does not declare
	TypeMismatch      Reason = "type_mismatch"      // wrong value type for the property
	OutOfRange        Reason = "out_of_range"       // outside minimum/maximum or the enum
	UnitMismatch      Reason = "unit_mismatch"      // a unit that does not convert to the model's
	TimeInFuture      Reason = "time_in_future"     // beyond Options.FutureSkew ahead of the hub
	TimeTooOld        Reason = "time_too_old"       // older than Options.MaxAge
	NoModel           Reason = "no_model"           // plain JSON from a device without a model
	MappingFailed     Reason = "mapping_failed"     // the model's vendor mapping failed
	NotAuthorized     Reason = "not_authorized"     // topic or path outside the device's own
	RateLimited       Reason = "rate_limited"       // over the publish rate
	Unavailable       Reason = "unavailable"        // the hub could not make the data durable
	StorageFull       Reason = "storage_full"       // the hub's disk is (nearly) full: retry later
	// StoreRefused is never an answer to a device: the message was accepted
	// and acknowledged, and the store refused one of its values later (a
	// second, different value for a property at a millisecond that already
	// has one). The value is kept as a dead letter instead of being lost.
	StoreRefused Reason = "store_refused"
)

// AllReasons lists every reason code, in PROTOCOL.md §2 order, for metrics
// that pre-register one counter per reason and for tests.
var AllReasons = []Reason{
	Malformed, UnsupportedFormat, TooLarge, UnknownProperty, TypeMismatch,
	OutOfRange, UnitMismatch, TimeInFuture, TimeTooOld, NoModel, MappingFailed,
	NotAuthorized, RateLimited, Unavailable, StorageFull, StoreRefused,
}

// MQTT 5 reason codes (MQTT 5.0 §2.4) used for refused publishes.
const (
	mqttUnspecified   = 0x80
	mqttNotAuthorized = 0x87
	mqttQuotaExceeded = 0x97
	mqttPayloadFormat = 0x99
)

// coap builds a CoAP response code class.detail as the header byte carries it
// (RFC 7252 §3: three bits class, five bits detail).
func coap(class, detail uint8) uint8 { return class<<5 | detail }

// MQTTCode is the MQTT 5 PUBACK reason code for r (PROTOCOL.md §2). An unknown
// reason answers 0x80 Unspecified error: a refusal must never read as success.
func (r Reason) MQTTCode() byte {
	switch r {
	case Malformed, UnsupportedFormat, UnknownProperty, TypeMismatch, OutOfRange,
		UnitMismatch, TimeInFuture, TimeTooOld, NoModel, MappingFailed:
		return mqttPayloadFormat
	case TooLarge, RateLimited, StorageFull:
		return mqttQuotaExceeded
	case NotAuthorized:
		return mqttNotAuthorized
	}
	return mqttUnspecified
}

// CoAPCode is the CoAP response code for r as class<<5|detail, so 4.22 is
// 0x96. An unknown reason answers 5.00 Internal Server Error.
func (r Reason) CoAPCode() uint8 {
	switch r {
	case Malformed:
		return coap(4, 0)
	case UnsupportedFormat:
		return coap(4, 15)
	case TooLarge:
		return coap(4, 13)
	case UnknownProperty, TypeMismatch, OutOfRange, UnitMismatch, TimeInFuture,
		TimeTooOld, NoModel, MappingFailed:
		return coap(4, 22)
	case NotAuthorized:
		return coap(4, 3)
	case RateLimited:
		return coap(4, 29) // RFC 8516 Too Many Requests
	case Unavailable, StorageFull:
		return coap(5, 3)
	}
	return coap(5, 0)
}

// HTTPStatus is the HTTP status for r. An unknown reason answers 500.
func (r Reason) HTTPStatus() int {
	switch r {
	case Malformed:
		return http.StatusBadRequest
	case UnsupportedFormat:
		return http.StatusUnsupportedMediaType
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case UnknownProperty, TypeMismatch, OutOfRange, UnitMismatch, TimeInFuture,
		TimeTooOld, NoModel, MappingFailed:
		return http.StatusUnprocessableEntity
	case NotAuthorized:
		return http.StatusForbidden
	case RateLimited:
		return http.StatusTooManyRequests
	case Unavailable:
		return http.StatusServiceUnavailable
	case StorageFull:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// RetryAfter is how long a device should wait before sending again after
// r, in seconds (the CoAP Max-Age of a 5.03, HTTP's Retry-After); 0 when
// r does not ask for a wait.
func (r Reason) RetryAfter() int {
	switch r {
	case Unavailable:
		return 1
	case StorageFull:
		return 30
	}
	return 0
}

// Durability is the answer for a message the hub did not make durable:
// the rejection err carries (storage_full), or unavailable.
func Durability(err error) *Rejection {
	var rej *Rejection
	if errors.As(err, &rej) {
		return rej
	}
	return &Rejection{Reason: Unavailable, Message: "the hub could not store the data; retry", Err: err}
}

// Valid reports whether r is one of AllReasons.
func (r Reason) Valid() bool {
	for _, x := range AllReasons {
		if x == r {
			return true
		}
	}
	return false
}

// Rejection is the error for a refused message. Message names the property or
// record and the rule ("temperature=300 above maximum 125"); it goes back to
// the device verbatim, so it quotes at most a property name and a value of the
// device's own input, never anything about other devices or the hub.
type Rejection struct {
	Reason  Reason
	Message string
	// Err is the underlying error, when there is one (a senml.Error, a CEL
	// evaluation error), for errors.Is/As and logs; it is never sent back.
	Err error
}

// Error returns "<reason>: <message>", the text of an MQTT 5 Reason String.
func (r *Rejection) Error() string { return string(r.Reason) + ": " + r.Message }

// Unwrap returns the underlying error, if any.
func (r *Rejection) Unwrap() error { return r.Err }

// Reject builds a Rejection with a formatted message. Adapters use it for the
// reasons they decide themselves (not_authorized, rate_limited, unavailable).
func Reject(reason Reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Message: fmt.Sprintf(format, args...)}
}
