// Package node holds the components a wanwu process is assembled from,
// whatever its role: the locked data directory with its disk guard, the
// telemetry side (the stores, the decoder, the pipeline and the adapters'
// intake), the protocol adapters as one list, and the API's HTTP servers.
//
// A role is an assembly of these with the services that stand on their
// own (bus.Start, registry.New, twin.Open, command.Open, api.New): the hub
// (internal/hub) runs all of them with the CA, the audit log and the
// forwarders; the edge runs the same pieces with its own link to the hub.
// Each component has an Options struct, a Start (or Open) that undoes what
// it did on error, and a Shutdown that waits for every goroutine it
// started. A role shuts them down in the reverse order of the data flow:
// the HTTP servers and adapters first, so that nothing new arrives, then
// the telemetry side, which writes what it accepted, then the bus and the
// databases.
package node
