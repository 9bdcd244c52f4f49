package noresponse

import (
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// IsNoResponseCode validates response code against NoResponse option from request.
// https://www.rfc-editor.org/rfc/rfc7967.txt
func IsNoResponseCode(code codes.Code, noRespValue uint32) error {
	// wanwu patch: RFC 7967 §2.1 suppresses whole classes (bit 1: 2.xx,
	// bit 3: 4.xx, bit 4: 5.xx); the code lists this replaces missed codes
	// such as 4.09, 4.22 and 4.29, which were sent although declined.
	switch class := uint32(code) >> 5; class { // wanwu patch
	case 2, 4, 5: // wanwu patch
		if noRespValue&(1<<(class-1)) != 0 { // wanwu patch
			return ErrMessageNotInterested // wanwu patch
		} // wanwu patch
	} // wanwu patch
	return nil
}
