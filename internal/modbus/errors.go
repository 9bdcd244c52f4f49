package modbus

import (
	"errors"
	"fmt"
	"os"
	"strings"

	mb "github.com/simonvetter/modbus"

	"github.com/wanwu-iot/wanwu/internal/presence"
)

// Causes of a failed request, the label of wanwu_modbus_errors_total.
const (
	causeTimeout     = "timeout"      // no answer within the timeout
	causeConnection  = "connection"   // no connection, or it broke
	causeException   = "exception"    // the device answered with a Modbus exception
	causeBadResponse = "bad_response" // the answer was malformed: a wrong length, function, unit or CRC
	causeBadValue    = "bad_value"    // a float register held NaN or an infinity
	causeRefused     = "refused"      // the values were refused by the model (a dead letter)
)

// Reasons a device is offline (Status.Reason, and presence's reason).
const (
	ReasonTimeout                = "timeout"
	ReasonNetwork                = presence.ReasonNetwork
	ReasonGatewayPathUnavailable = "gateway_path_unavailable"
	ReasonGatewayTargetFailed    = "gateway_target_failed"
)

// exceptions are the standard exception codes (Modbus Application Protocol
// v1.1b3 §7) by the library's errors.
var exceptions = map[mb.Error]uint8{
	mb.ErrIllegalFunction:         0x01,
	mb.ErrIllegalDataAddress:      0x02,
	mb.ErrIllegalDataValue:        0x03,
	mb.ErrServerDeviceFailure:     0x04,
	mb.ErrAcknowledge:             0x05,
	mb.ErrServerDeviceBusy:        0x06,
	mb.ErrMemoryParityError:       0x08,
	mb.ErrGWPathUnavailable:       0x0a,
	mb.ErrGWTargetFailedToRespond: 0x0b,
}

// failure is a classified request error.
type failure struct {
	cause string
	// down: the device did not answer (a timeout, no connection, or a
	// gateway saying so); reason says why, for presence.
	down   bool
	reason string
	err    error
}

// classify says what a request's error means.
func classify(err error) failure {
	var e mb.Error
	if errors.As(err, &e) {
		if _, ok := exceptions[e]; ok {
			f := failure{cause: causeException, err: err}
			switch e {
			case mb.ErrGWPathUnavailable:
				f.down, f.reason = true, ReasonGatewayPathUnavailable
			case mb.ErrGWTargetFailedToRespond:
				f.down, f.reason = true, ReasonGatewayTargetFailed
			}
			return f
		}
		switch e {
		case mb.ErrRequestTimedOut:
			return failure{cause: causeTimeout, down: true, reason: ReasonTimeout, err: err}
		case mb.ErrProtocolError, mb.ErrBadCRC, mb.ErrShortFrame, mb.ErrBadUnitId, mb.ErrBadTransactionId, mb.ErrUnknownProtocolId:
			return failure{cause: causeBadResponse, err: err}
		}
	}
	switch {
	case strings.HasPrefix(err.Error(), "unknown exception code"): // the library's words for a code outside §7
		return failure{cause: causeException, err: err}
	case os.IsTimeout(err) || errors.Is(err, os.ErrDeadlineExceeded):
		return failure{cause: causeTimeout, down: true, reason: ReasonTimeout, err: err}
	}
	return failure{cause: causeConnection, down: true, reason: ReasonNetwork, err: err}
}

// exceptionReason is a command's failure reason for an exception:
// "Modbus exception 03: illegal data value".
func exceptionReason(err error) string {
	var e mb.Error
	if errors.As(err, &e) {
		if code, ok := exceptions[e]; ok {
			return fmt.Sprintf("Modbus exception %02d: %s", code, e)
		}
	}
	return "Modbus exception: " + err.Error()
}
