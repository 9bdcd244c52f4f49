// Package coap is the hub's CoAP endpoint (RFC 7252) for NB-IoT-class
// devices, built on go-coap v3 and pion/dtls v3.
//
// # Listeners
//
// DTLSListen (coaps, default port 5684) authenticates devices in the
// handshake: PSK mode, where the PSK identity is the device code and the key
// comes from Options.PSK (the hub derives it with package psk from the
// device's active key, so rotating the key changes the PSK), or certificate
// mode, where the client certificate must chain to ClientCAs and name the
// device (the same check as MQTT's TLS listener). The cipher suites are the
// CCM_8 suites of RFC 7925 plus common GCM/CCM/CBC ones; pion answers
// ClientHellos with a HelloVerifyRequest cookie, so the handshake does not
// amplify either. Sessions take RFC 9146 connection ids: a device that
// offers the extension gets an 8-byte id, names its session with it, and
// keeps the session when a NAT gives it a new address while it sleeps; the
// hub answers and notifies at the address of its newest record. Listen (plain UDP, default port 5683, off unless set) is for
// development: every request carries a device token (docs/PROTOCOL.md §4) in
// Uri-Query "t=<token>" (a token longer than one option's 255 bytes may be
// split over several "t=" options, joined in order). An address like
// ":5683" listens on every IPv4 and IPv6 address.
//
// # Admission
//
// A DTLS session is admitted at its first request and stays admitted until
// DisconnectDevice (the hub calls it on revocation, quarantine and key
// changes) closes it; plain UDP requests are authenticated one by one, a
// token verified before being recognised (for at most a minute and never
// past its expiry) until DisconnectDevice forgets the device's tokens.
// Active devices have every path; quarantined devices only GET /c and POST
// /c/<id> (remediation; anything else 4.03); revoked and unknown devices and
// bad credentials get 4.01 without a diagnostic, the same answer whatever the
// reason (docs/PROTOCOL.md §7.1). Over DTLS-PSK the identity is checked in
// the handshake (pskFor): an unknown identity, a device that may not connect
// and a wrong key all fail at the Finished check, with no alert, since an
// unknown or revoked identity gets a dummy key (an HMAC of the identity
// under a secret of the process) rather than an error, which pion would
// answer with a fatal alert at once. The reason is counted
// (wanwu_coap_rejected_total) and logged, rate-limited, never told.
//
// # Paths (docs/PROTOCOL.md §7)
//
//	POST /t              telemetry (SenML JSON 110, SenML CBOR 112, JSON 50)  2.04 once durable
//	POST /e/<event>      an event's data                                       2.04 once durable
//	POST /tw/r           RFC 7386 merge patch of the reported state (JSON)      2.04
//	GET  /tw/d           {"version","desired","delta"}; Observe: notified on every desired change
//	GET  /c              the next command {"id","action","args","expires_at"}, empty if none;
//	                     Observe: commands arrive as notifications
//	POST /c/<id>         the command's result {"status","reason","output"}     2.04
//
// Telemetry and events go through the adapters' one accept path
// (adapter.Intake) as for HTTP and MQTT: a refused message is kept as a dead letter and answered
// with the CoAP code of its reason (PROTOCOL.md §2: 4.00, 4.13, 4.15, 4.22,
// 4.03, 4.29, 5.03) and a short text/plain diagnostic payload
// "<reason>: <message>" (at most 160 bytes). Unknown paths answer 4.04, wrong
// methods 4.05, twin errors 4.00/4.13/4.03, an unknown command 4.04, a
// different result for a finished command 4.09.
//
// # Messages
//
// CON and NON requests are both accepted; CON requests get piggybacked
// answers, NON requests NON answers (§5.2.3). No-Response (RFC 7967) is
// honoured by class: a declined answer is not sent (a CON request still gets
// its empty ACK), and the request is processed all the same.
//
// Refused before processing (RFC 7252): a request with a critical option
// the hub does not act on (an unknown one, If-Match, If-None-Match; §5.4.1)
// gets an empty 4.02 when CON and is ignored when NON; Proxy-Uri or
// Proxy-Scheme 5.05 (§5.7.2); GET /tw/d or /c with an Accept other than
// application/json 4.06 (§5.10.4); a CON carrying a response an RST (§4.2).
//
// Message format errors (§3, §4.1: no CoAP header, a reserved token length,
// an option or token past the end, a payload marker with an empty payload,
// an Empty message with bytes after its header) are dropped before any
// processing, on both listeners (malformed.go: DTLS records are screened
// before go-coap, which ended the session at the first one): a CON gets an
// RST, a NON nothing. They, and DTLS handshakes that do not complete (junk
// that looks like a ClientHello, a wrong key, an unknown or revoked identity;
// they run out after Options.HandshakeTimeout), are counted in
// wanwu_coap_malformed_total{listener,cause} and logged as one line per
// listener at most every 10 s, saying how many it stands for. Datagrams to
// the DTLS listener that are no handshake record, from a source without a
// session, pion drops unseen.
//
// Deduplication (RFC 7252 §4.5): a retransmitted CON gets the cached answer
// from go-coap's per-endpoint exchange cache without being processed again;
// duplicate NON requests (same message id within NON_LIFETIME) are silently
// dropped. Block-wise transfers (RFC 7959) are reassembled by
// go-coap (patched, third_party/go-coap/PATCHES.md), by endpoint and request
// identity (method and options but Block1/Block2/Size1/Size2), whatever the
// tokens of the blocks (§2.3: libcoap sends each block with a new one); a
// transfer that does not start at block 0 or misses a block is answered 4.08
// (§2.9.2; wanwu_coap_rejected_total{reason="request_entity_incomplete"}).
// Reassembly is capped at MaxPayload: a request whose Size1 announces more, or
// whose Block1 would grow the body past it, is answered 4.13 with Size1 =
// the limit and is not buffered. go-coap answers the blocks before the last
// itself (2.31), so processReceived authenticates each of them and counts it
// against its device first: one that fails is answered 4.01 or 4.29 by the
// handler and not buffered. A request with Block1 or Size1 never takes the
// plain-UDP fast path.
//
// # Observe and queue mode (RFC 7641)
//
// A device that registers (GET with Observe 0) on /tw/d gets the current
// state and a notification whenever NotifyTwin is called for it. On /c the
// registration's answer is empty and the commands follow as notifications,
// oldest first (the endpoint attaches a command.Sink): confirmable when the
// registration was, and then the device's ACK confirms delivery
// (command.Service.Delivered); for a NON registration, or a poll (GET /c
// without Observe), the device's next GET /c or its result confirms it.
// An RST to a notification, GET with Observe 1, or the end of the session
// ends the observation. Queue mode: a sleeping device that wakes and
// registers (or polls) receives what waited for it; the command service
// keeps the queue and redelivers what was not confirmed.
//
// # Limits and amplification
//
// Every datagram counts against its source address (Limits.RequestsPerAddr;
// over the rate it is dropped silently), every authenticated request,
// including each block, against its device (RequestsPerDevice; 4.29). On the
// plain UDP listener, a source endpoint that has not authenticated never gets
// an answer larger than 3× its request (RFC 7252 §11.3): refusals carry no
// diagnostic, go-coap's 4.02 diagnostic for unknown critical options is
// replaced by an empty 4.02, an unparsable CON gets a 4-byte RST, and the
// endpoint's writes are checked against the bound as a last resort.
//
// One goroutine reads the plain UDP listener for every source; it never
// waits for a slow endpoint. It serves a single-datagram POST /t or /e/<event>
// with only Uri-Path, Uri-Query and Content-Format options itself (fast.go):
// decoded once, handed to the pipeline without waiting, answered from the
// pipeline's callback once durable, CON answers kept per endpoint for
// retransmissions. Every other request goes through go-coap's connection. An endpoint whose 64 queued requests are still
// being handled loses the next datagram (wanwu_coap_dropped_total, cause
// endpoint_busy; a CON request is retransmitted) while the others are read
// on. The socket's receive buffer is 4 MiB (capped at net.core.rmem_max).
package coap
