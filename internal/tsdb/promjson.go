package tsdb

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// The JSON shapes of Prometheus' query results (web/api/v1 with
// util/jsonutil). Prometheus encodes them with jsoniter codecs that are not
// exported; these types reproduce the bytes with encoding/json.

type queryData struct {
	ResultType parser.ValueType `json:"resultType"`
	Result     any              `json:"result"`
}

type jsonSeries struct {
	Metric     labels.Labels `json:"metric"`
	Values     []jsonFPoint  `json:"values,omitempty"`
	Histograms []jsonHPoint  `json:"histograms,omitempty"`
}

type jsonSample struct {
	Metric    labels.Labels `json:"metric"`
	Value     *jsonFPoint   `json:"value,omitempty"`
	Histogram *jsonHPoint   `json:"histogram,omitempty"`
}

// jsonFPoint is [seconds, "value"]: the value is a string so that NaN and
// ±Inf survive JSON.
type jsonFPoint struct {
	T int64
	F float64
}

func (p jsonFPoint) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 40)
	b = append(b, '[')
	b = appendTimestamp(b, p.T)
	b = append(b, ',', '"')
	b = appendFloat(b, p.F)
	b = append(b, '"', ']')
	return b, nil
}

// jsonHPoint is [seconds, {count, sum, buckets}].
type jsonHPoint struct {
	T int64
	H *histogram.FloatHistogram
}

func (p jsonHPoint) MarshalJSON() ([]byte, error) {
	type bucket [4]any
	h := struct {
		Count   string   `json:"count"`
		Sum     string   `json:"sum"`
		Buckets []bucket `json:"buckets,omitempty"`
	}{
		Count: string(appendFloat(nil, p.H.Count)),
		Sum:   string(appendFloat(nil, p.H.Sum)),
	}
	it := p.H.AllBucketIterator()
	for it.Next() {
		bk := it.At()
		if bk.Count == 0 {
			continue
		}
		// Prometheus' boundary rule: 0 open left, 1 open right, 2 open
		// both, 3 closed both.
		rule := 2
		switch {
		case bk.LowerInclusive && bk.UpperInclusive:
			rule = 3
		case bk.LowerInclusive:
			rule = 1
		case bk.UpperInclusive:
			rule = 0
		}
		h.Buckets = append(h.Buckets, bucket{rule,
			string(appendFloat(nil, bk.Lower)), string(appendFloat(nil, bk.Upper)), string(appendFloat(nil, bk.Count))})
	}
	body, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	b := append([]byte{'['}, appendTimestamp(nil, p.T)...)
	b = append(b, ',')
	b = append(b, body...)
	return append(b, ']'), nil
}

// appendTimestamp writes ms as seconds with up to three decimals, exactly.
func appendTimestamp(b []byte, t int64) []byte {
	if t < 0 {
		b = append(b, '-')
		t = -t
	}
	b = strconv.AppendInt(b, t/1000, 10)
	if frac := t % 1000; frac != 0 {
		b = append(b, '.')
		if frac < 100 {
			b = append(b, '0')
		}
		if frac < 10 {
			b = append(b, '0')
		}
		b = strconv.AppendInt(b, frac, 10)
	}
	return b
}

// appendFloat formats as Prometheus does: shortest round-trip form, with
// "NaN", "+Inf" and "-Inf".
func appendFloat(b []byte, f float64) []byte {
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

func encodeResult(v parser.Value) (queryData, error) {
	switch r := v.(type) {
	case promql.Matrix:
		out := make([]jsonSeries, len(r))
		for i, s := range r {
			out[i] = jsonSeries{Metric: s.Metric}
			for _, p := range s.Floats {
				out[i].Values = append(out[i].Values, jsonFPoint{p.T, p.F})
			}
			for _, p := range s.Histograms {
				out[i].Histograms = append(out[i].Histograms, jsonHPoint{p.T, p.H})
			}
		}
		return queryData{ResultType: parser.ValueTypeMatrix, Result: out}, nil
	case promql.Vector:
		out := make([]jsonSample, len(r))
		for i, s := range r {
			out[i] = jsonSample{Metric: s.Metric}
			if s.H != nil {
				out[i].Histogram = &jsonHPoint{s.T, s.H}
			} else {
				out[i].Value = &jsonFPoint{s.T, s.F}
			}
		}
		return queryData{ResultType: parser.ValueTypeVector, Result: out}, nil
	case promql.Scalar:
		return queryData{ResultType: parser.ValueTypeScalar, Result: jsonFPoint{r.T, r.V}}, nil
	case promql.String:
		return queryData{ResultType: parser.ValueTypeString, Result: [2]json.RawMessage{
			appendTimestamp(nil, r.T), mustJSON(r.V)}}, nil
	}
	return queryData{}, fmt.Errorf("encode: unexpected result type %T", v)
}

func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
