package ingest

import (
	"errors"
	"fmt"
	"slices"

	"github.com/fxamacker/cbor/v2"
)

// Batches carry accepted messages on the bus. The first byte says the
// format: version 2 (batch_binary.go), what EncodeBatch writes, is a
// hand-written binary encoding; version 1, which earlier releases wrote and
// JetStream may still hold, is CBOR, an array of the format version and the
// messages, each message and record a map with small integer keys (the cbor
// tags on Message and Record) and empty fields left out. A CBOR array of
// two starts with 0x82, so the two cannot be confused.
//
// A batch format changes only with a new version number, never by
// renumbering a field: a hub must read what an edge of the previous release
// has stored and forwarded.

// BatchVersion is the format EncodeBatch writes. DecodeBatch reads it and
// version 1.
const BatchVersion = batchV2

const (
	batchV1 = 1    // CBOR
	batchV2 = 2    // binary
	cborV1  = 0x82 // first byte of a version 1 batch: CBOR array of two
)

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

// wireBatch is format version 1 (CBOR), read only.
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
	return AppendBatch(nil, msgs)
}

// AppendBatch is EncodeBatch appending to dst, so that a caller can reuse
// one buffer for every batch.
func AppendBatch(dst []byte, msgs []Message) ([]byte, error) {
	if len(msgs) > maxBatchMessages {
		return nil, fmt.Errorf("ingest: encode batch: %d messages, at most %d", len(msgs), maxBatchMessages)
	}
	for i := range msgs {
		if err := msgs[i].check(); err != nil {
			return nil, fmt.Errorf("ingest: encode batch: message %d: %w", i, err)
		}
	}
	return appendBatchV2(slices.Grow(dst, batchSizeV2(msgs)), msgs), nil
}

// DecodeBatch decodes a batch written by EncodeBatch, or by an earlier
// release in format version 1. It refuses unknown versions
// (ErrBatchVersion), and anything malformed: truncated, with trailing bytes,
// unknown fields, NaN or infinite numbers, counts or lengths beyond the
// bytes that follow, messages that Telemetry and Event could not have
// produced, and for version 1 also duplicate keys and text that is not UTF-8
// (ErrBatchMalformed). The messages do not share memory with b.
func DecodeBatch(b []byte) ([]Message, error) {
	return new(BatchReader).Decode(b)
}

// A BatchReader decodes batches as DecodeBatch does, reusing the memory of
// the messages and records from one batch to the next: what Decode returns
// is valid until the next call. The strings and byte slices in the messages
// are not reused and may be kept. The zero value is ready to use; a
// BatchReader is not safe for concurrent use.
type BatchReader struct {
	msgs []Message
	recs []Record
}

// maxReaderKeeps bounds the messages, and the records, a BatchReader keeps
// arrays for between calls.
const maxReaderKeeps = 1 << 14

// Decode decodes one batch.
func (r *BatchReader) Decode(b []byte) ([]Message, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBatchMalformed)
	}
	switch b[0] {
	case batchV2:
		msgs, recs, err := decodeBatchV2(b, r.msgs, r.recs)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBatchMalformed, err)
		}
		if cap(msgs) <= maxReaderKeeps {
			r.msgs = msgs[:0]
		}
		if cap(recs) <= maxReaderKeeps {
			r.recs = recs[:0]
		}
		return msgs, nil
	case cborV1:
		return decodeBatchCBOR(b)
	}
	if b[0] < 0x80 {
		// A version byte of a later format.
		return nil, fmt.Errorf("%w: version %d, this build reads %d and %d", ErrBatchVersion, b[0], batchV1, batchV2)
	}
	return decodeBatchCBOR(b) // reports a CBOR head of another version, or malformed
}

// decodeBatchCBOR decodes format version 1.
func decodeBatchCBOR(b []byte) ([]Message, error) {
	// Decode in one pass as version 1; only if that fails is the head
	// decoded alone, so that a batch of another version is reported as such
	// rather than as malformed.
	var wb wireBatch
	if err := batchDec.Unmarshal(b, &wb); err != nil {
		var head wireHead
		if batchDec.Unmarshal(b, &head) == nil && head.Version != batchV1 {
			return nil, fmt.Errorf("%w: CBOR version %d, this build reads %d", ErrBatchVersion, head.Version, batchV1)
		}
		return nil, fmt.Errorf("%w: %w", ErrBatchMalformed, err)
	}
	if wb.Version != batchV1 {
		return nil, fmt.Errorf("%w: CBOR version %d, this build reads %d", ErrBatchVersion, wb.Version, batchV1)
	}
	msgs := wb.Messages
	if msgs == nil {
		msgs = []Message{} // as version 2 gives an empty batch (CBOR may say null)
	}
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
		if !finite(r.Float) || !finite(r.Lat) || !finite(r.Lon) || !finite(r.Alt) {
			return fmt.Errorf("record %d: NaN or infinite number", i)
		}
	}
	return nil
}
