package thingmodel

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid is the error every rejected model wraps: both Parse and Validate
// return a *ValidationError that unwraps to it.
var ErrInvalid = errors.New("invalid thing model")

// Limits on a model document. They keep a single upload from costing the
// registry, the console or the ingest validators more than a bounded amount.
const (
	MaxDocumentSize = 1 << 20 // bytes of JSON
	MaxAffordances  = 1024    // properties + events + actions
	MaxSchemaDepth  = 4
)

// Data types a schema may declare.
const (
	TypeNumber   = "number"
	TypeInteger  = "integer"
	TypeBoolean  = "boolean"
	TypeString   = "string"
	TypePosition = "position"
	TypeObject   = "object"
	TypeArray    = "array"
)

// Data classifications, from least to most sensitive. Classification decides
// what the edge may sync upward (capability C6) and what the catalog lists (C10).
const (
	ClassPublic    = "public"
	ClassInternal  = "internal"
	ClassImportant = "important"
	ClassCore      = "core"

	// DefaultClassification applies where a model names none.
	DefaultClassification = ClassInternal
)

// Forwarding priorities (Property.Priority, Event.Priority): the classes an
// edge holds data in until the hub has it, most urgent first.
const (
	PriorityAlarm     = "alarm"
	PriorityControl   = "control"
	PriorityTelemetry = "telemetry"
	PriorityBulk      = "bulk"
)

// Problem is one reason a model is invalid.
type Problem struct {
	Path    string // JSONPath of the offending value, e.g. "$.properties.temperature.minimum"
	Message string
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// ValidationError lists every problem found in a model, sorted by path.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalid.Error())
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("\n")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Model is a parsed thing model. Maps are keyed by affordance name.
type Model struct {
	ID          string               `json:"id"`
	Version     string               `json:"version"`
	Title       string               `json:"title,omitempty"`
	Description string               `json:"description,omitempty"`
	Properties  map[string]*Property `json:"properties,omitempty"`
	Events      map[string]*Event    `json:"events,omitempty"`
	Actions     map[string]*Action   `json:"actions,omitempty"`
	Mapping     *Mapping             `json:"mapping,omitempty"`
}

// Mapping says how a device's own data becomes property values: CEL
// expressions over its JSON payloads (Properties, Time), and where a Modbus
// device holds them (Modbus). A mapping has expressions, a Modbus mapping,
// or both.
//
// The expressions turn a vendor's own JSON payload into property values
// (PROTOCOL.md §3.3). Each expression is CEL over one variable, payload: the
// decoded JSON, typed dyn. Properties maps a declared property to the
// expression computing its value ("payload.t / 10.0"); Time, if set, computes
// the timestamp (seconds since the epoch, an RFC 3339 string or a CEL
// timestamp). An expression yielding null or optional.none() leaves its
// property out of that message. JSON numbers are CEL doubles.
//
// Parse checks the mapping's shape: declared property names, non-empty
// expressions within MaxExpressionLen. Whether an expression compiles, and
// to a type that fits its property, is checked by the ingest package
// (ingest.CheckMapping), which owns the CEL environment: this package stays
// free of the CEL runtime, which only ingest needs, and the one environment
// that checks a mapping is the one that runs it.
//
// A model with only a Modbus mapping has no expressions: its devices' plain
// JSON is read as property values (§3.2), as for a model without a mapping.
type Mapping struct {
	Properties map[string]string `json:"properties,omitempty"`
	Time       string            `json:"time,omitempty"`
	Modbus     *ModbusMapping    `json:"modbus,omitempty"`
}

// HasExpressions reports whether mp maps JSON payloads with CEL
// expressions; false for a nil mapping.
func (mp *Mapping) HasExpressions() bool { return mp != nil && len(mp.Properties) > 0 }

// MaxExpressionLen bounds one mapping expression, in bytes: a mapping is a
// few arithmetic steps per property, and the bound caps what compiling a
// hostile model costs.
const MaxExpressionLen = 4096

// Schema describes a data value.
type Schema struct {
	Type        string             `json:"type"`
	Unit        string             `json:"unit,omitempty"`
	Minimum     *float64           `json:"minimum,omitempty"`
	Maximum     *float64           `json:"maximum,omitempty"`
	Enum        []string           `json:"enum,omitempty"`
	Properties  map[string]*Schema `json:"properties,omitempty"`
	Items       *Schema            `json:"items,omitempty"`
	Description string             `json:"description,omitempty"`
}

// Property is a value an object reports (and, unless ReadOnly, accepts as
// desired state).
type Property struct {
	Schema
	Sampling       string `json:"sampling,omitempty"` // Go duration: how often the device is expected to report; a hint
	Classification string `json:"classification,omitempty"`
	ReadOnly       bool   `json:"readOnly,omitempty"`
	// Priority is the forwarding class of its values at an edge:
	// "telemetry" (the default) or "bulk" (raw captures that may wait and,
	// when the edge's quota is full, be dropped oldest first), or "alarm".
	Priority string `json:"priority,omitempty"`
}

// Event is something an object announces, with an optional payload.
type Event struct {
	Description    string  `json:"description,omitempty"`
	Classification string  `json:"classification,omitempty"`
	Data           *Schema `json:"data,omitempty"`
	// Priority is the forwarding class of the event at an edge: "control"
	// (the default), "alarm" (forwarded before everything else, never
	// dropped), "telemetry" or "bulk".
	Priority string `json:"priority,omitempty"`
}

// Action is a command an object accepts. Input and Output are keyed by
// argument name.
type Action struct {
	Description    string             `json:"description,omitempty"`
	Input          map[string]*Schema `json:"input,omitempty"`
	Output         map[string]*Schema `json:"output,omitempty"`
	Classification string             `json:"classification,omitempty"`
}

// Key identifies this model version in the registry: id@version.
func (m *Model) Key() string { return m.ID + "@" + m.Version }

// Parse decodes and validates a model document. Fields a model leaves to their
// defaults (classification) are filled in, so the result is what JSON writes.
func Parse(data []byte) (*Model, error) {
	c := &checker{}
	if len(data) > MaxDocumentSize {
		c.add("$", "document is %d bytes, more than the limit of %d", len(data), MaxDocumentSize)
		return nil, c.err()
	}
	root, err := parseTree(data)
	if err != nil {
		c.add("$", "not valid JSON: %v", err)
		return nil, c.err()
	}
	m := decodeModel(c, root)
	if m != nil {
		m.fillDefaults()
		m.validate(c)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks a model built in code the same way Parse checks a document.
func (m *Model) Validate() error {
	c := &checker{}
	if m == nil {
		c.add("$", "model is nil")
	} else {
		m.validate(c)
	}
	return c.err()
}

// checker collects problems. A path gets only its first problem: once a value
// is known to be malformed, further complaints about it would be noise.
type checker struct {
	probs []Problem
	seen  map[string]bool
}

func (c *checker) add(path, format string, args ...any) {
	if c.seen[path] {
		return
	}
	if c.seen == nil {
		c.seen = make(map[string]bool)
	}
	c.seen[path] = true
	c.probs = append(c.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	if len(c.probs) == 0 {
		return nil
	}
	probs := append([]Problem(nil), c.probs...)
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].Path < probs[j].Path })
	return &ValidationError{Problems: probs}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fillDefaults makes implicit defaults explicit and drops empty collections,
// so that two documents meaning the same model decode to equal values.
func (m *Model) fillDefaults() {
	if len(m.Properties) == 0 {
		m.Properties = nil
	}
	if len(m.Events) == 0 {
		m.Events = nil
	}
	if len(m.Actions) == 0 {
		m.Actions = nil
	}
	for _, p := range m.Properties {
		if p != nil && p.Classification == "" {
			p.Classification = DefaultClassification
		}
	}
	for _, e := range m.Events {
		if e != nil && e.Classification == "" {
			e.Classification = DefaultClassification
		}
	}
	if m.Mapping != nil && m.Mapping.Modbus != nil {
		m.Mapping.Modbus.fillDefaults()
	}
	for _, a := range m.Actions {
		if a == nil {
			continue
		}
		if a.Classification == "" {
			a.Classification = DefaultClassification
		}
		if len(a.Input) == 0 {
			a.Input = nil
		}
		if len(a.Output) == 0 {
			a.Output = nil
		}
	}
}
