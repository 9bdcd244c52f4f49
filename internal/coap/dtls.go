package coap

import (
	"context"
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
		cfg.PSK = func(identity []byte) ([]byte, error) {
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			defer cancel()
			key, err := s.opts.PSK(ctx, string(identity))
			if err != nil {
				s.m.rejected.WithLabelValues("bad_psk_identity").Inc()
				return nil, err
			}
			return key, nil
		}
	}
	if s.opts.Certificate != nil {
		cfg.CipherSuites = append(cfg.CipherSuites, certSuites...)
		cfg.Certificates = []tls.Certificate{*s.opts.Certificate}
		cfg.ClientCAs = s.opts.ClientCAs
		cfg.ClientAuth = dtls.VerifyClientCertIfGiven
	}
	return cfg
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
			return inactivity.New(s.idle, func(cc *client.Conn) { _ = cc.Close() })
		}
		cfg.OnNewConn = func(cc *client.Conn) { s.newConn(cc, nil) }
		cfg.PeriodicRunner = func(f func(now time.Time) bool) {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
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
			}()
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
		if st.udp == nil && (st.code() == code || pskIdentity(cc) == code) {
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
