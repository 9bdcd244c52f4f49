package linkemu

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// The emulator sits below TLS and DTLS, as it will in the simulator: these
// check that a handshake and an exchange work through a link with latency,
// the deadlines that crypto/tls and pion set included.

func TestTLS(t *testing.T) {
	cert := selfSigned(t)
	l := New(profile(func(p *netprofile.Profile) {
		p.Latency = netprofile.Latency{Base: 20 * time.Millisecond, JitterMedian: 2 * time.Millisecond, JitterMax: 10 * time.Millisecond}
		p.UplinkBPS, p.DownlinkBPS = 2_000_000, 4_000_000
	}), 1)
	dev, hub := tcpPair(t, l)
	srv := tls.Server(hub, &tls.Config{Certificates: []tls.Certificate{cert}})
	cli := tls.Client(dev, &tls.Config{InsecureSkipVerify: true})
	echoed := make(chan error, 1)
	go func() {
		_, err := io.Copy(srv, srv) // echo until the client's close_notify
		srv.Close()
		echoed <- err
	}()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	// TLS 1.3 takes one round trip before the client may send.
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("handshake in %v, less than a round trip", d)
	}
	msg := []byte("hello through the link")
	if _, err := cli.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(cli, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo %q, %v", got, err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-echoed; err != nil {
		t.Fatalf("echo: %v", err)
	}
	s := l.Stats()
	if s.Up.Bytes < int64(len(msg)) || s.Down.Bytes < int64(len(msg)) {
		t.Errorf("Stats() = %+v", s)
	}
}

func TestDTLS(t *testing.T) {
	l := New(profile(func(p *netprofile.Profile) {
		p.Latency = netprofile.Latency{Base: 20 * time.Millisecond}
		p.MTU = 1280
	}), 1)
	dev, hub := udpPair(t, l)
	psk := func([]byte) ([]byte, error) { return []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil }
	cfg := &dtls.Config{PSK: psk, PSKIdentityHint: []byte("dev"), CipherSuites: []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8}}
	srv, err := dtls.Server(hub, dev.LocalAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := dtls.Client(dev, hub.LocalAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	echoed := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		srv.SetDeadline(time.Now().Add(10 * time.Second))
		n, err := srv.Read(buf)
		if err == nil {
			_, err = srv.Write(buf[:n])
		}
		echoed <- err
	}()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := cli.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := cli.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo %q, %v", buf[:n], err)
	}
	if err := <-echoed; err != nil {
		t.Fatalf("echo: %v", err)
	}
	if s := l.Stats(); s.Up.Packets < 3 || s.Down.Packets < 3 || s.Up.Oversize+s.Down.Oversize != 0 {
		t.Errorf("Stats() = %+v", s)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hub"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
