// Package sim runs a fleet of simulated devices against a hub (or an edge)
// by URL: `wanwu sim` and `wanwu demo` use it.
//
// The devices come from a scenario (package scenario: classes of devices
// with physically plausible signals). Each device
//
//   - is registered through the hub's bulk import with a hub-generated key,
//     its thing model, its network profile and a class tag, or (Claim)
//     claims its identity itself with a claim token made for its class, with
//     a key it generates (identities are cached in a state file, so that a
//     second run reuses them);
//   - connects over the real protocols with the device SDK: MQTT 5 over TLS
//     with its client certificate, or CoAP over DTLS for NB-IoT-class
//     devices, each connection carried through an in-process link emulator
//     (package linkemu) with its class's network profile (package
//     netprofile), from one of many local addresses so that the hub's
//     per-address limits see a fleet and not one client;
//   - reports what its physics says when it says it; a PSM device's link
//     sleeps between reports and wakes for each, staying reachable for the
//     profile's active timer, during which the SDK asks for what waits;
//   - carries out the commands and desired changes its thing model
//     declares, through its physics (a lower feed rate reduces chatter).
//
// Stats counts per class and per network: devices online, messages
// acknowledged and refused (with reasons, so that a hub refusing one class
// says why while the others go on), commands, and bytes on the air. The
// fleet is deterministic for a seed: the physics and the links draw from
// it.
package sim
