// Package forward is the store-and-forward from an edge node to its hub:
// what the edge acknowledged reaches the hub exactly once, in order per
// device, most urgent first, across link cuts, hub restarts and edge
// crashes.
//
// At the edge, Outboxes is a consumer of the ingest log (a
// pipeline.SeqConsumer). It splits every durable batch into forwarding
// classes (Alarm > Control > Telemetry > Bulk, from the thing model's
// priority on properties and events), keeps the values of properties
// classified important or core at the edge (the hub gets their per-minute
// rollups unless a sharing grant names them), and appends each class's part
// to that class's outbox, a JetStream stream whose sequence is the class's
// idempotency key. Each class has a quota and a policy when it is full:
// back-pressure (Admit refuses new messages of the class; nothing accepted
// is dropped) for Alarm and Control, downsampling of the oldest raw values
// into rollups for Telemetry, dropping the oldest for Bulk; every reduction
// writes a gap record signed with the edge's key to the Control class.
//
// Link sends the outboxes to the hub over HTTP/2 and TLS with the edge's
// client certificate: the most urgent class with something waiting, in
// bounded uplinks, resuming after the hub's high-water marks whenever the
// link returns.
//
// At the hub, Receiver stores what is above the mark of (edge, epoch,
// class), then moves the mark; refuses data of devices not behind the
// edge; audits gap records; and applies command results and reported
// states that came up. docs/PROTOCOL.md §12 is the wire protocol.
package forward
