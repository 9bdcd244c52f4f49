package modbus

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// crc16 is the Modbus RTU frame check (CRC-16/MODBUS, Modbus over Serial
// Line v1.02 §6.2.2).
func crc16(b []byte) uint16 {
	crc := uint16(0xffff)
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xa001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// serveRTUGateway runs what a serial device server does, with Modbus TCP
// on the far side instead of a serial line: it takes RTU frames over TCP,
// passes each request to the Modbus TCP server at backend, and answers
// with its answer in an RTU frame; when the backend does not answer, it
// answers exception 0x0B (gateway target device failed to respond).
func serveRTUGateway(t *testing.T, backend string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				for {
					frame, err := readRTURequest(c)
					if err != nil {
						return
					}
					unit, pdu := frame[0], frame[1:len(frame)-2]
					answer, err := askTCP(backend, unit, pdu)
					if err != nil {
						answer = []byte{pdu[0] | 0x80, 0x0b}
					}
					out := append([]byte{unit}, answer...)
					out = binary.LittleEndian.AppendUint16(out, crc16(out))
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			})
		}
	})
	return l.Addr().String()
}

// readRTURequest reads one request frame (functions 01-06, 15, 16) and
// checks its CRC.
func readRTURequest(r io.Reader) ([]byte, error) {
	frame := make([]byte, 8)
	if _, err := io.ReadFull(r, frame[:2]); err != nil {
		return nil, err
	}
	switch frame[1] {
	case 1, 2, 3, 4, 5, 6:
		if _, err := io.ReadFull(r, frame[2:8]); err != nil {
			return nil, err
		}
	case 15, 16:
		frame = frame[:7]
		if _, err := io.ReadFull(r, frame[2:7]); err != nil {
			return nil, err
		}
		rest := make([]byte, int(frame[6])+2)
		if _, err := io.ReadFull(r, rest); err != nil {
			return nil, err
		}
		frame = append(frame, rest...)
	default:
		return nil, io.ErrUnexpectedEOF
	}
	n := len(frame)
	if crc16(frame[:n-2]) != binary.LittleEndian.Uint16(frame[n-2:]) {
		return nil, io.ErrUnexpectedEOF
	}
	return frame, nil
}

// askTCP sends one PDU to a Modbus TCP server and returns its answer's PDU.
func askTCP(addr string, unit byte, pdu []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	req := []byte{0, 1, 0, 0}
	req = binary.BigEndian.AppendUint16(req, uint16(len(pdu)+1))
	req = append(append(req, unit), pdu...)
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	hdr := make([]byte, 7)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	body := make([]byte, int(binary.BigEndian.Uint16(hdr[4:6]))-1)
	_, err = io.ReadFull(c, body)
	return body, err
}

// TestRTUOverTCP: a device behind an RTU-over-TCP gateway is polled and
// written through it; when the gateway says the device does not answer
// (exception 0x0B), it is offline for that reason, and back when it
// answers again.
func TestRTUOverTCP(t *testing.T) {
	e := newEnv(t)
	f := newField()
	f.holding[0] = 215
	f.coils[5] = true
	backend := freeAddr(t)
	stop := serve(t, backend, f)
	gw := serveRTUGateway(t, backend)
	dev := device(t, "acme:rtu", gw)
	dev.URL, dev.UnitID = "rtuovertcp://"+gw, 3
	d := e.driver([]Device{dev}, nil)
	eventually(t, "values through the gateway", func() bool {
		r, _ := e.rec.latest("acme:rtu", "temperature")
		c, _ := e.rec.latest("acme:rtu", "running")
		return r.Float == 21.5 && c.Bool
	})
	stop()
	eventually(t, "offline behind the gateway", func() bool {
		st := statusOf(d, "acme:rtu")
		return !st.Online && st.Reason == ReasonGatewayTargetFailed
	})
	if st := statusOf(d, "acme:rtu"); st.LastError != "gateway target device failed to respond" {
		t.Errorf("status %+v", st)
	}
	serve(t, backend, f)
	eventually(t, "online again", func() bool { return statusOf(d, "acme:rtu").Online })
	polls := statusOf(d, "acme:rtu").Polls
	eventually(t, "polled again", func() bool { return statusOf(d, "acme:rtu").Polls > polls })
}
