package loadgen

import (
	"syscall"
)

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): a socket
// bound to a source address gets its port at connect time, unique per
// 4-tuple, instead of at bind time, unique per address. It lets one source
// address carry more connections than its ephemeral port range to several
// destinations, and keeps TIME_WAIT sockets of a previous run from using up
// the ports.
const ipBindAddressNoPort = 24

func dialControl(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	if serr != nil && network == "tcp4" {
		return serr
	}
	return nil
}
