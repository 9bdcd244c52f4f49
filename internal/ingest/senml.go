package ingest

import (
	"errors"
	"strings"
	"sync"
	"time"

	wcode "github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/senml"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// senmlBuffers recycles the memory of decoded SenML packs.
var senmlBuffers = sync.Pool{New: func() any { return new(senml.Buffers) }}

// senml decodes a SenML pack (PROTOCOL.md §3.1) into records.
func (d *Decoder) senml(dev Device, f format, payload []byte, now time.Time) ([]Record, *Rejection) {
	lim := senml.Limits{MaxBytes: d.o.MaxPayload, MaxRecords: d.o.MaxRecords}
	// The decoded and resolved packs live only until the records are built
	// (which copy what they keep): their memory serves the next message.
	bf := senmlBuffers.Get().(*senml.Buffers)
	defer senmlBuffers.Put(bf)
	var pack senml.Pack
	var err error
	if f == formatSenMLJSON {
		pack, err = bf.DecodeJSON(payload, lim)
	} else {
		pack, err = bf.DecodeCBOR(payload, lim)
	}
	if err != nil {
		return nil, senmlRejection(err)
	}
	res, err := bf.Resolve(pack, now)
	if err != nil {
		return nil, senmlRejection(err)
	}

	recs := newRecords(len(res))
	var pos []posPart
	// Resolve drops records that only set base fields; walking the pack
	// beside its output recovers each resolved record's base name (which
	// must be stripped) and whether its unit was sent or inherited.
	bn, j := "", 0
	for i := range pack {
		r := &pack[i]
		if r.BaseName != "" {
			if other := otherDevice(dev.Code, r.BaseName); other != "" {
				return nil, Reject(NotAuthorized, "record %d: base name %q names device %s; a device sends only its own data", i, r.BaseName, other)
			}
			if !baseNameOK(dev.Code, r.BaseName) {
				return nil, Reject(Malformed, "record %d: base name %q must be the device code followed by \":\" or \"/\", or end in \"/\"", i, r.BaseName)
			}
			bn = r.BaseName
		}
		if r.Value == nil && r.StringValue == nil && r.BoolValue == nil && r.DataValue == nil && r.Sum == nil {
			continue // base fields only
		}
		if j >= len(res) || !strings.HasPrefix(res[j].Name, bn) {
			// Resolve and this walk disagree: a senml change this code
			// has not followed. Refuse rather than store under a wrong name.
			return nil, Reject(Malformed, "record %d: cannot be resolved", i)
		}
		rr := &res[j]
		j++
		name := rr.Name[len(bn):]
		if name == "" {
			return nil, Reject(Malformed, "record %d: name is empty once the base name is stripped; send n", i)
		}
		if rr.Kind == senml.KindSum || rr.HasSum {
			return nil, Reject(TypeMismatch, "%s: sums (s, bs) are not supported; send the value in v", name)
		}
		ms := rr.Time.UnixMilli()
		explicit := r.Unit != ""

		var rec Record
		var rej *Rejection
		switch m := dev.Model; {
		case m == nil:
			rec = asSent(name, rr, ms)
		case m.Properties[name] != nil:
			rec, rej = senmlRecord(name, m.Properties[name], rr, explicit, ms)
		default:
			part, ok := positionPart(m, name)
			if !ok {
				return nil, Reject(UnknownProperty, "%q is not a property of %s", name, m.Key())
			}
			if part.v, rej = senmlNumber(name, part.schema, rr, explicit); rej != nil {
				return nil, rej
			}
			if rej = d.checkTime(name, ms, now); rej != nil {
				return nil, rej
			}
			part.ms = ms
			pos = append(pos, part)
			continue
		}
		if rej != nil {
			return nil, rej
		}
		if rej = d.checkTime(name, ms, now); rej != nil {
			return nil, rej
		}
		recs = append(recs, rec)
	}
	if len(pos) > 0 {
		return groupPositions(recs, pos)
	}
	return recs, nil
}

func senmlRejection(err error) *Rejection {
	reason := Malformed
	if errors.Is(err, senml.ErrTooLarge) {
		reason = TooLarge
	}
	return &Rejection{Reason: reason, Message: strings.TrimPrefix(err.Error(), "senml: "), Err: err}
}

// baseNameOK applies PROTOCOL.md §3.1: the device code followed by ":" (or
// "/"), or any prefix ending in "/".
func baseNameOK(code, bn string) bool {
	if strings.HasSuffix(bn, "/") {
		return true
	}
	return len(bn) == len(code)+1 && bn[len(code)] == ':' && bn[:len(code)] == code
}

// otherDevice returns the device code a base name ending in "/" or ":"
// names when it is a code and not the sender's ("" otherwise): such data
// was stored under the sender before, as if it were its own.
func otherDevice(code, bn string) string {
	stem := strings.TrimRight(bn, "/:")
	if stem == code || stem == bn {
		return ""
	}
	if c, err := wcode.Parse(stem); err == nil && c.String() != code {
		return c.String()
	}
	return ""
}

// senmlLabel names the SenML field that carries a value of kind k.
func senmlLabel(k senml.Kind) string {
	switch k {
	case senml.KindFloat:
		return "v"
	case senml.KindString:
		return "vs"
	case senml.KindBool:
		return "vb"
	case senml.KindData:
		return "vd"
	}
	return "s"
}

// asSent keeps a record of a device without a model as it came.
func asSent(name string, rr *senml.Resolved, ms int64) Record {
	r := Record{Property: name, Time: ms, Unit: rr.Unit}
	switch rr.Kind {
	case senml.KindFloat:
		r.Kind, r.Float = KindFloat, rr.Float
	case senml.KindString:
		r.Kind, r.String = KindString, rr.String
	case senml.KindBool:
		r.Kind, r.Bool = KindBool, rr.Bool
	default:
		r.Kind = KindData
		if len(rr.Data) > 0 { // empty data is nil, as on the bus
			r.Data = rr.Data
		}
	}
	return r
}

func senmlNumber(name string, s *thingmodel.Schema, rr *senml.Resolved, explicit bool) (float64, *Rejection) {
	if rr.Kind != senml.KindFloat {
		return 0, Reject(TypeMismatch, "%s is %s: send v, not %s", name, aType(s.Type), senmlLabel(rr.Kind))
	}
	return number(name, s, rr.Float, rr.Unit, explicit)
}

func senmlRecord(name string, p *thingmodel.Property, rr *senml.Resolved, explicit bool, ms int64) (Record, *Rejection) {
	r := Record{Property: name, Time: ms, Unit: p.Unit}
	noUnit := func() *Rejection {
		if explicit {
			return Reject(UnitMismatch, "%s is %s and takes no unit; got %q", name, aType(p.Type), rr.Unit)
		}
		return nil
	}
	switch p.Type {
	case thingmodel.TypeNumber, thingmodel.TypeInteger:
		v, rej := senmlNumber(name, &p.Schema, rr, explicit)
		if rej != nil {
			return Record{}, rej
		}
		r.Kind, r.Float = KindFloat, v
	case thingmodel.TypeBoolean:
		if rr.Kind != senml.KindBool {
			return Record{}, Reject(TypeMismatch, "%s is a boolean: send vb, not %s", name, senmlLabel(rr.Kind))
		}
		if rej := noUnit(); rej != nil {
			return Record{}, rej
		}
		r.Kind, r.Bool = KindBool, rr.Bool
	case thingmodel.TypeString:
		if rr.Kind != senml.KindString {
			return Record{}, Reject(TypeMismatch, "%s is a string: send vs, not %s", name, senmlLabel(rr.Kind))
		}
		if rej := noUnit(); rej != nil {
			return Record{}, rej
		}
		if rej := enum(name, &p.Schema, rr.String); rej != nil {
			return Record{}, rej
		}
		r.Kind, r.String = KindString, rr.String
	case thingmodel.TypePosition:
		return Record{}, Reject(TypeMismatch, "%[1]s is a position: send %[1]s/lat, %[1]s/lon and optionally %[1]s/alt", name)
	default:
		return Record{}, Reject(TypeMismatch, "%s is %s: send it as JSON (%s)", name, aType(p.Type), ContentJSON)
	}
	return r, nil
}

// posPart is one coordinate of a position sent as SenML records
// <prop>/lat, <prop>/lon, <prop>/alt.
type posPart struct {
	prop   string
	axis   byte // 'a'lt, 'l'at, 'o' for lon
	schema *thingmodel.Schema
	v      float64
	ms     int64
}

var (
	latMin, latMax = -90.0, 90.0
	lonMin, lonMax = -180.0, 180.0
	latSchema      = &thingmodel.Schema{Type: thingmodel.TypeNumber, Unit: "lat", Minimum: &latMin, Maximum: &latMax}
	lonSchema      = &thingmodel.Schema{Type: thingmodel.TypeNumber, Unit: "lon", Minimum: &lonMin, Maximum: &lonMax}
	altSchema      = &thingmodel.Schema{Type: thingmodel.TypeNumber, Unit: "m"}
)

func positionPart(m *thingmodel.Model, name string) (posPart, bool) {
	k := strings.LastIndexByte(name, '/')
	if k <= 0 {
		return posPart{}, false
	}
	prop, axis := name[:k], name[k+1:]
	if p := m.Properties[prop]; p == nil || p.Type != thingmodel.TypePosition {
		return posPart{}, false
	}
	switch axis {
	case "lat":
		return posPart{prop: prop, axis: 'l', schema: latSchema}, true
	case "lon":
		return posPart{prop: prop, axis: 'o', schema: lonSchema}, true
	case "alt":
		return posPart{prop: prop, axis: 'a', schema: altSchema}, true
	}
	return posPart{}, false
}

// groupPositions joins coordinates sent at the same time into one position
// record each.
func groupPositions(recs []Record, parts []posPart) ([]Record, *Rejection) {
	type group struct {
		r              Record
		hasLat, hasLon bool
	}
	var groups []group
	for _, p := range parts {
		gi := -1
		for i := range groups {
			if groups[i].r.Property == p.prop && groups[i].r.Time == p.ms {
				gi = i
				break
			}
		}
		if gi < 0 {
			groups = append(groups, group{r: Record{Property: p.prop, Time: p.ms, Kind: KindPosition}})
			gi = len(groups) - 1
		}
		g := &groups[gi]
		var seen *bool
		switch p.axis {
		case 'l':
			seen, g.r.Lat = &g.hasLat, p.v
		case 'o':
			seen, g.r.Lon = &g.hasLon, p.v
		default:
			seen, g.r.Alt = &g.r.HasAlt, p.v
		}
		if *seen {
			return nil, Reject(Malformed, "%s has two values for one coordinate at time %s", p.prop, fmtTime(p.ms))
		}
		*seen = true
	}
	for _, g := range groups {
		if !g.hasLat || !g.hasLon {
			return nil, Reject(TypeMismatch, "%[1]s at %[2]s needs both %[1]s/lat and %[1]s/lon", g.r.Property, fmtTime(g.r.Time))
		}
		recs = append(recs, g.r)
	}
	return recs, nil
}
