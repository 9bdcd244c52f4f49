package ingest

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Batches carry accepted messages on the bus: CBOR, an array of the format
// version and the messages, each message and record a map with small integer
// keys (the cbor tags on Message and Record) and empty fields left out. Maps
// rather than arrays for messages and records because most record fields are
// empty for any one kind of value; integer keys keep them compact.
//
// A batch format version changes only with a new number here, never by
// renumbering a field: a hub must read what an edge of the previous release
// has stored and forwarded.

// BatchVersion is the format EncodeBatch writes and DecodeBatch reads.
const BatchVersion = 1

// Errors from DecodeBatch.
var (
	// ErrBatchVersion: the batch is of a format version this build does not read.
	ErrBatchVersion = errors.New("ingest: unsupported batch version")
	// ErrBatchMalformed: not a well-formed batch, or a message in it breaks
	// an invariant that Telemetry and Event guarantee.
	ErrBatchMalformed = errors.New("ingest: malformed batch")
)

// Bounds DecodeBatch enforces; the bus is a trust boundary too.
const (
	maxBatchMessages = 1 << 16
	maxBatchLevels   = 8
)

type wireBatch struct {
	_        struct{} `cbor:",toarray"`
	Version  uint64
	Messages []Message
}

type wireHead struct {
	_        struct{} `cbor:",toarray"`
	Version  uint64
	Messages cbor.RawMessage
}

var (
	batchEnc = func() cbor.EncMode {
		em, err := cbor.EncOptions{
			ShortestFloat: cbor.ShortestFloat16, // lossless: 21.5 takes 3 bytes, not 9
			NaNConvert:    cbor.NaNConvertReject,
			InfConvert:    cbor.InfConvertReject,
		}.EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
	batchDec = func() cbor.DecMode {
		dm, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			MaxNestedLevels:   maxBatchLevels,
			MaxArrayElements:  maxBatchMessages,
			MaxMapPairs:       32,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
			UTF8:              cbor.UTF8RejectInvalid,
			NaN:               cbor.NaNDecodeForbidden,
			Inf:               cbor.InfDecodeForbidden,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return dm
	}()
)

// EncodeBatch encodes messages for the bus. It refuses messages DecodeBatch
// would refuse, so that one bad message cannot become a batch that no
// consumer can read.
func EncodeBatch(msgs []Message) ([]byte, error) {
	for i := range msgs {
		if err := msgs[i].check(); err != nil {
			return nil, fmt.Errorf("ingest: encode batch: message %d: %w", i, err)
		}
	}
	b, err := batchEnc.Marshal(wireBatch{Version: BatchVersion, Messages: msgs})
	if err != nil {
		return nil, fmt.Errorf("ingest: encode batch: %w", err)
	}
	return b, nil
}

// DecodeBatch decodes a batch written by EncodeBatch. It refuses unknown
// versions (ErrBatchVersion), and anything malformed, with unknown fields,
// duplicate keys, NaN or infinite numbers, or messages that Telemetry and
// Event could not have produced (ErrBatchMalformed).
func DecodeBatch(b []byte) ([]Message, error) {
	// Decode in one pass as the current version; only if that fails is
	// the head decoded alone, so that a batch of another version is
	// reported as such rather than as malformed.
	var wb wireBatch
	if err := batchDec.Unmarshal(b, &wb); err != nil {
		var head wireHead
		if batchDec.Unmarshal(b, &head) == nil && head.Version != BatchVersion {
			return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrBatchVersion, head.Version, BatchVersion)
		}
		return nil, fmt.Errorf("%w: %w", ErrBatchMalformed, err)
	}
	if wb.Version != BatchVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrBatchVersion, wb.Version, BatchVersion)
	}
	msgs := wb.Messages
	for i := range msgs {
		if err := msgs[i].normalize(); err != nil {
			return nil, fmt.Errorf("%w: message %d: %w", ErrBatchMalformed, i, err)
		}
	}
	return msgs, nil
}

// normalize checks a decoded message and gives empty byte strings and
// slices one representation, nil, as Telemetry and Event do.
func (m *Message) normalize() error {
	if len(m.EventData) == 0 {
		m.EventData = nil
	}
	if len(m.Records) == 0 {
		m.Records = nil
	}
	for i := range m.Records {
		if len(m.Records[i].Data) == 0 {
			m.Records[i].Data = nil
		}
	}
	return m.check()
}

// check enforces what Telemetry and Event guarantee of a message.
func (m *Message) check() error {
	if m.Device == "" {
		return errors.New("no device")
	}
	switch m.Kind {
	case Telemetry:
		if m.Event != "" || len(m.EventData) > 0 {
			return errors.New("telemetry with event fields")
		}
	case Event:
		if m.Event == "" || len(m.Records) > 0 {
			return errors.New("event without a name, or with records")
		}
	default:
		return fmt.Errorf("unknown message kind %d", m.Kind)
	}
	for i := range m.Records {
		r := &m.Records[i]
		if r.Property == "" {
			return fmt.Errorf("record %d: no property", i)
		}
		if r.Kind >= numKinds {
			return fmt.Errorf("record %d: unknown kind %d", i, r.Kind)
		}
	}
	return nil
}
