// Package device is wanwu's device SDK: what a device or gateway written in
// Go needs to be a wanwu device.
//
//   - Provisioning: Claim trades a claim token (from `wanwu ctl claim
//     create`) and a key the device made for its identity; Save and
//     LoadIdentity keep it in a directory (key.pem, mode 0600, and
//     identity.json).
//   - Connecting: Connect keeps a connection to the hub over MQTT 5 (with a
//     device token it signs itself, renewed before it expires, or with its
//     client certificate over TLS) or CoAP (plain UDP with tokens, or DTLS
//     with its certificate).
//   - Telemetry: Publish sends SenML records. They go to a durable local
//     buffer first (one append-only file) and leave it only when the hub
//     acknowledged them (MQTT PUBACK, CoAP 2.04), so that nothing is lost
//     across reconnects, hub restarts or the device's own restarts; they are
//     sent again in order, each with its time, so the hub stores each once.
//   - Twins and commands: OnDesired receives the twin's delta,
//     ReportState reports state, OnCommand carries out commands and sends
//     their results. Over MQTT the hub pushes them; over CoAP the client
//     asks for them after each message it sends and on Poll (queue mode,
//     for devices that sleep between reports).
//   - Links: Options.Dial and Options.ListenPacket open the client's
//     sockets, so a link emulator or a proxy can carry its traffic;
//     Options.MemoryBuffer keeps the buffer in memory (simulated devices).
//
// The protocol itself is in the repository's docs/PROTOCOL.md;
// docs/DEVICES.md shows it byte by byte for devices that cannot run Go.
//
// The package carries none of the hub's weight (no SQLite, NATS server or
// Prometheus TSDB: TestDependencies checks it), so it builds into small
// binaries for gateways.
package device
