// Package ingest turns what a device sent into canonical records, or into a
// rejection with a reason (capability C3, PROTOCOL.md §2 and §3). Every protocol
// adapter (MQTT, HTTP, CoAP) calls it after authenticating the sender and
// before publishing to the bus; it is the one place where payload formats,
// thing-model validation and unit conversion live, so that a device gets the
// same answer whichever protocol it uses.
//
// A message is accepted or rejected as a whole: a half-stored message would
// leave a device unable to tell what to resend. Every rejection is a
// *Rejection whose Reason maps to an MQTT 5, CoAP and HTTP code and whose
// Message names the property or record and the rule it broke.
//
// Formats (PROTOCOL.md §3): SenML JSON and CBOR through internal/senml, and
// plain JSON objects through a small parser of this package's own (see
// json.go for why). A model may carry a vendor mapping of CEL expressions
// (thingmodel.Mapping); such a device's plain JSON is run through the
// mapping, compiled once per model version and evaluated under a cost limit
// and a deadline, so a hostile or careless expression cannot stall ingest.
// A mapping may instead (or as well) say where a Modbus device holds its
// properties (thingmodel.ModbusMapping): the edge's driver polls those and
// sends SenML, so a model whose mapping has no expressions reads plain
// JSON as property values, as one without a mapping does. CheckMapping
// checks the expressions and the Modbus mapping's unit conversions.
//
// Validation against the thing model: the property must exist; the value
// must have its type (integers whole, strings within the enum); a unit, if
// sent, must equal the model's or convert to it (ConvertUnit), and the value
// is converted; numbers must lie within minimum and maximum after
// conversion; timestamps must lie within Options.FutureSkew ahead of and
// Options.MaxAge behind the hub's clock. Choices the protocol leaves open:
//
//   - A SenML base name must be the device code followed by ":" or "/", or
//     any prefix ending in "/"; it is stripped and the rest must name a
//     property. One that is another device's code is refused
//     (not_authorized): it was stored under the sender before. A unit inherited from "bu" is ignored for properties whose
//     model declares no unit (a pack may mix quantities); one sent in "u"
//     is always checked.
//   - A position property is sent in SenML as records <prop>/lat,
//     <prop>/lon and optionally <prop>/alt, grouped by time; in JSON as
//     {"lat":..,"lon":..,"alt":..}.
//   - In plain JSON the member "ts" is always the timestamp, never a
//     property, and there are no units: values are in the model's units.
//   - Object and array properties, and event data, are accepted as JSON
//     only and stored as compact JSON (KindData). Declared members may be
//     left out; undeclared ones are refused.
//   - SenML sums (s, bs) are refused: no property type holds an integral,
//     and silently dropping one would lose data.
//   - Two values for one property at one time are refused: the store keeps
//     one sample per series and time, so one of them would be lost.
//   - A mapping expression that evaluates to null or optional.none() leaves
//     its property out, which is how a mapping expresses optional fields.
//     A mapping's result goes through the same checks as plain JSON.
//
// Accepted messages travel on the bus in batches (EncodeBatch,
// DecodeBatch): versioned CBOR, decoded strictly because the bus is a trust
// boundary too.
package ingest
