package ingest

import (
	"errors"
	"math"
	"time"
)

// plain decodes a plain JSON object of property values (PROTOCOL.md §3.2),
// or hands the payload to the model's vendor mapping (§3.3).
func (d *Decoder) plain(dev Device, payload []byte, now time.Time) ([]Record, *Rejection) {
	m := dev.Model
	if m == nil {
		return nil, Reject(NoModel, "device %s has no thing model, so plain JSON cannot be mapped; send SenML", dev.Code)
	}
	nodes, err := parseJSON(payload)
	if err != nil {
		return nil, jsonRejection(err)
	}
	if m.Mapping.HasExpressions() { // a Modbus mapping alone maps no JSON
		return d.mapped(dev, nodes, now)
	}
	root := &nodes[0]
	if root.kind != jObj {
		return nil, Reject(Malformed, "plain JSON must be an object of property values, not %s", article(root.kind))
	}
	if int(root.n) > d.o.MaxRecords {
		return nil, Reject(TooLarge, "%d members, more than the limit of %d", root.n, d.o.MaxRecords)
	}
	ms := now.UnixMilli()
	if t := member(nodes, 0, "ts"); t >= 0 {
		var rej *Rejection
		if ms, rej = jsonTime("ts", &nodes[t]); rej != nil {
			return nil, rej
		}
		if rej = d.checkTime("ts", ms, now); rej != nil {
			return nil, rej
		}
	}
	recs := newRecords(int(root.n))
	for c := 1; c < int(root.end); c = int(nodes[c].end) {
		key := nodes[c].key
		if key == "ts" {
			continue
		}
		p := m.Properties[key]
		if p == nil {
			return nil, Reject(UnknownProperty, "%q is not a property of %s", truncate(key), m.Key())
		}
		rec, rej := jsonRecord(key, p, nodes, c, ms)
		if rej != nil {
			return nil, rej
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		return nil, Reject(Malformed, "no property values")
	}
	return recs, nil
}

func jsonRejection(err error) *Rejection {
	reason := Malformed
	if errors.Is(err, errJSONTooLarge) {
		reason = TooLarge
	}
	return &Rejection{Reason: reason, Message: "invalid JSON: " + err.Error(), Err: err}
}

// maxSeconds is 10000-01-01T00:00:00Z, where senml also stops: a time must
// print as a four-digit year everywhere downstream.
const maxSeconds = 253402300800

// jsonTime reads a timestamp: seconds since the epoch, or an RFC 3339 string.
func jsonTime(name string, n *jnode) (int64, *Rejection) {
	switch n.kind {
	case jNum:
		return secondsToMs(name, n.num)
	case jStr:
		return rfc3339ToMs(name, n.str)
	}
	return 0, Reject(Malformed, "%s must be seconds since the epoch or an RFC 3339 string, not %s", name, article(n.kind))
}

func secondsToMs(name string, s float64) (int64, *Rejection) {
	switch {
	case !finite(s):
		return 0, Reject(Malformed, "%s must be a finite number", name)
	case s >= maxSeconds:
		return 0, Reject(TimeInFuture, "%s=%s is after the year 9999: seconds expected, not milliseconds", name, fmtNum(s))
	case s < 0:
		return 0, Reject(TimeTooOld, "%s=%s is before 1970", name, fmtNum(s))
	}
	return int64(math.Round(s * 1000)), nil
}

func rfc3339ToMs(name, s string) (int64, *Rejection) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, &Rejection{Reason: Malformed, Message: name + " " + quote(s) + " is not an RFC 3339 time", Err: err}
	}
	return t.UnixMilli(), nil
}
