// Package thingmodel defines wanwu's versioned thing models (capability C3): what
// a kind of object reports (properties), announces (events) and accepts
// (actions), with types, SenML units, ranges and a data classification per
// affordance.
//
// A model is a JSON document identified by a code-grammar id and a semantic
// version. Parse is strict: unknown fields, duplicate keys, unknown units and
// inconsistent constraints are all rejected, and every problem is reported with
// its JSONPath so an author can fix a document in one pass. Accepted models
// have one canonical JSON form (Model.JSON), which is what the registry stores
// and hashes, and can be exported as a W3C WoT Thing Model
// (Model.ThingDescription) for tools that speak WoT.
//
// Schema nesting: a property, event payload or action argument is at depth 1;
// each "properties" or "items" level below it adds one; depth 4 is the deepest
// allowed. A "position" is an object {"lat","lon","alt"} in degrees and
// meters, lat and lon required.
//
// A model may carry a mapping (Mapping): CEL expressions that turn a
// vendor's JSON into property values, whose shape this package checks and
// whose CEL ingest.CheckMapping compiles; and a Modbus register map
// (ModbusMapping) that an edge polls and writes, checked here in full but
// for its unit conversions (ingest's again).
//
// ValidateArgs treats every declared argument (and every declared member of a
// nested object) as required, and rejects undeclared ones: a command that
// drives a machine must not run on a guessed default.
package thingmodel
