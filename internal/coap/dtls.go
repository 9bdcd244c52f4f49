package coap

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	dtls "github.com/pion/dtls/v3"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/monitor/inactivity"
	"github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/psk"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// dtlsListener is go-coap's DTLS server on a pion/dtls listener.
type dtlsListener struct {
	ln  *coapNet.DTLSListener
	srv *dtlsServer.Server
	wg  sync.WaitGroup
}

// serverOption sets go-coap's DTLS server configuration directly.
type serverOption func(*dtlsServer.Config)

func (f serverOption) DTLSServerApply(cfg *dtlsServer.Config) { f(cfg) }

// DTLSHandshakeTimeout is the default of Options.HandshakeTimeout.
const DTLSHandshakeTimeout = 30 * time.Second

// connectionIDLength is the length of the DTLS connection ids the hub
// gives sessions (RFC 9146): the bytes each record of such a session carries.
const connectionIDLength = 8

// Cipher suites: RFC 7925 §4.2 and §4.4 mandate the CCM_8 suites for
// constrained devices; the others are common in NB-IoT modem stacks.
var (
	pskSuites = []dtls.CipherSuiteID{
		dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_PSK_WITH_AES_128_CCM,
		dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	}
	certSuites = []dtls.CipherSuiteID{
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	}
)

// dtlsConfig is the pion configuration: PSK suites when Options.PSK is set,
// certificate suites with client certificates verified against ClientCAs
// when a Certificate is. A session must end up with a PSK identity or a
// verified client certificate.
func (s *Server) dtlsConfig() *dtls.Config {
	cfg := &dtls.Config{
		ExtendedMasterSecret: dtls.RequireExtendedMasterSecret,
		// RFC 9146 connection ids: a device whose NAT mapping changed
		// while it slept keeps its session, since its records name the
		// session; a device that does not offer the extension is served as
		// before. Eight random bytes keep ids of a million sessions apart.
		ConnectionIDGenerator: dtls.RandomCIDGenerator(connectionIDLength),
		VerifyConnection: func(st *dtls.State) error {
			if len(st.PeerCertificates) == 0 && len(st.IdentityHint) == 0 {
				return fmt.Errorf("coap: a DTLS client must present a PSK identity or a certificate")
			}
			return nil
		},
	}
	if s.opts.PSK != nil {
		cfg.CipherSuites = append(cfg.CipherSuites, pskSuites...)
		cfg.PSK = s.pskFor
	}
	if s.opts.Certificate != nil {
		cfg.CipherSuites = append(cfg.CipherSuites, certSuites...)
		cfg.Certificates = []tls.Certificate{*s.opts.Certificate}
		cfg.ClientCAs = s.opts.ClientCAs
		cfg.ClientAuth = dtls.VerifyClientCertIfGiven
	}
	return cfg
}

// pskFor is the PSK callback of the handshake. Every failed device
// authentication must look the same to the caller (docs/PROTOCOL.md §7.1):
// an identity that is unknown, or names a device that may not connect
// (revoked) or has no key, gets a dummy key instead of an error, so that its
// handshake fails at the Finished check exactly as a wrong key's does: no
// alert, no answer, the client times out. An error here would make pion
// send a fatal alert at once, telling the caller that the identity is not a
// device. Both lookups run in every case, so that the time to fail says no
// more than the answer. The reason goes to wanwu_coap_rejected_total and
// the log, not to the caller.
func (s *Server) pskFor(identity []byte) ([]byte, error) {
	id := string(identity)
	dev, _ := psk.ParseIdentity(id)
	if _, err := code.Parse(dev); err != nil || len(id) > maxIdentity {
		return s.refusePSK(identity, "psk_unknown_identity", nil), nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	key, kerr := s.opts.PSK(ctx, id)
	adm, aerr := s.opts.Registry.Admit(ctx, dev, registry.Presented{})
	switch {
	case aerr != nil:
		return s.refusePSK(identity, "registry_unavailable", aerr), nil
	case adm.Status == registry.StatusUnknown:
		return s.refusePSK(identity, "psk_unknown_identity", nil), nil
	case adm.Status != registry.StatusActive && adm.Status != registry.StatusQuarantined:
		return s.refusePSK(identity, "psk_not_admitted", nil), nil
	case kerr != nil || len(key) == 0:
		// Revoking a device revokes its keys: no active key is a device
		// that may not connect, or whose key lookup failed.
		return s.refusePSK(identity, "psk_no_key", kerr), nil
	}
	return key, nil
}

// maxIdentity bounds the PSK identity looked up (a device code is far
// shorter).
const maxIdentity = 256

// refusePSK counts and logs a refused PSK identity and returns its dummy key.
func (s *Server) refusePSK(identity []byte, reason string, err error) []byte {
	s.m.rejected.WithLabelValues(reason).Inc()
	if n, ok := s.authLog.allow(reason, time.Now()); ok {
		attrs := []any{"reason", reason, "count", n}
		if len(identity) <= maxIdentity {
			attrs = append(attrs, "identity", string(identity)) // a device code: not a secret
		}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		s.log.Warn("coap dtls: PSK identity refused; its handshake fails at Finished", attrs...)
	}
	return s.dummyPSK(identity)
}

// dummyPSK is the key a refused identity's handshake runs with: derived
// from a secret of this process, so the same identity gets the same key
// every time and no one can hold it.
func (s *Server) dummyPSK(identity []byte) []byte {
	h := hmac.New(sha256.New, s.pskSecret[:])
	h.Write([]byte("wanwu-coap-dummy-psk\x00"))
	h.Write(identity)
	return h.Sum(nil)
}

// sleepIdle is how long the session's device, once admitted, may be idle
// (Options.SleepIdle); 0 when it is not known.
func (s *Server) sleepIdle(cc *client.Conn) time.Duration {
	if s.opts.SleepIdle == nil {
		return 0
	}
	st := s.state(cc)
	if st == nil {
		return 0
	}
	st.mu.Lock()
	dev := st.dev
	st.mu.Unlock()
	if dev == nil {
		return 0
	}
	return s.opts.SleepIdle(dev.code)
}

func (s *Server) startDTLS() (*dtlsListener, error) {
	ln, err := coapNet.NewDTLSListener("udp", s.opts.DTLSListen, s.dtlsConfig())
	if err != nil {
		return nil, fmt.Errorf("coap: listen dtls %s: %w", s.opts.DTLSListen, err)
	}
	srv := dtlsServer.New(serverOption(func(cfg *dtlsServer.Config) {
		cc := client.DefaultConfig
		s.connConfig(&cc)
		cfg.Ctx = s.ctx
		cfg.Handler = cc.Handler
		cfg.Errors = cc.Errors
		cfg.MaxMessageSize = cc.MaxMessageSize
		cfg.BlockwiseEnable = cc.BlockwiseEnable
		cfg.BlockwiseSZX = cc.BlockwiseSZX
		cfg.BlockwiseTransferTimeout = cc.BlockwiseTransferTimeout
		cfg.ReceivedMessageQueueSize = cc.ReceivedMessageQueueSize
		cfg.ProcessReceivedMessage = cc.ProcessReceivedMessage
		cfg.MessagePool = cc.MessagePool
		cfg.HandshakeTimeout = s.opts.HandshakeTimeout
		cfg.RequestMonitor = s.requestMonitor
		cfg.CreateInactivityMonitor = func() client.InactivityMonitor {
			var m *inactivity.Monitor[*client.Conn]
			// How long the session may idle is asked once, when it first
			// idles past s.idle (the server's periodic runner calls this
			// from one goroutine); a network changed meanwhile applies to
			// the device's next session.
			keep, asked := time.Duration(0), false
			m = inactivity.New(s.idle, func(cc *client.Conn) {
				if !asked {
					keep, asked = s.sleepIdle(cc), true
				}
				if keep > s.idle && time.Since(m.LastActivity()) < keep {
					return // a sleeping device's session outlives its sleep
				}
				_ = cc.Close()
			})
			return m
		}
		cfg.OnNewConn = func(cc *client.Conn) { s.newConn(cc, nil) }
		cfg.PeriodicRunner = func(f func(now time.Time) bool) {
			s.g.Go(func() {
				t := time.NewTicker(time.Second)
				defer t.Stop()
				for {
					select {
					case <-s.ctx.Done():
						return
					case now := <-t.C:
						if !f(now) {
							return
						}
					}
				}
			})
		}
	}))
	l := &dtlsListener{ln: ln, srv: srv}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := srv.Serve(screenedListener{DTLSListener: ln, s: s}); err != nil {
			s.log.Error("coap dtls server stopped", "err", err)
		}
	}()
	return l, nil
}

func (l *dtlsListener) addr() net.Addr { return l.ln.Addr() }

func (l *dtlsListener) close() {
	l.srv.Stop()
	l.wg.Wait()
}

// closeDevice closes the DTLS sessions of a device.
func (l *dtlsListener) closeDevice(s *Server, code string) {
	s.conns.Range(func(k, v any) bool {
		cc, st := k.(*client.Conn), v.(*connState)
		if dev, _ := psk.ParseIdentity(pskIdentity(cc)); st.udp == nil && (st.code() == code || dev == code) {
			_ = cc.Close()
		}
		return true
	})
}

// pskIdentity is the PSK identity of a DTLS session, "" if none.
func pskIdentity(cc *client.Conn) string {
	dc := dtlsConnOf(cc.NetConn())
	if dc == nil {
		return ""
	}
	st, ok := dc.ConnectionState()
	if !ok {
		return ""
	}
	return string(st.IdentityHint)
}
