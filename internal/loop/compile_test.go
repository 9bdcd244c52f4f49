package loop

import "testing"

// TestCompileReadsTwin: a loop is marked as reading the twin exactly when
// one of its expressions names it, wherever the expression is; the engine
// reads the twin for such loops only.
func TestCompileReadsTwin(t *testing.T) {
	e := newEnv(t, "hub", "")
	const head = `
id: t
on: {model: demo:cnc-spindle}
perceive:
  band: {property: vibBandHigh, fn: last}
  feed: {property: feedRate, fn: last}
`
	cases := []struct {
		name, rest string
		want       bool
	}{
		{"features only", "decide: {when: band > 1.0}\nact: {command: setFeedRate, args: {feedRate: feed * 0.8}}\n", false},
		{"current and object", "decide: {when: \"band > 1.0 && has(current.feedRate) && object.code != ''\"}\nact: {alarm: {name: a, severity: low}}\n", false},
		{"a field named twin", "decide: {when: band > 1.0}\nact: {alarm: {name: twin, severity: low, message: \"'twin'\"}}\n", false},
		{"when", "decide: {when: band > 1.0 && twin.version > 0}\nact: {alarm: {name: a, severity: low}}\n", true},
		{"clear", "decide: {when: band > 1.0, clear: \"has(twin.reported.feedRate)\"}\nact: {alarm: {name: a, severity: low}}\n", true},
		{"args", "decide: {when: band > 1.0}\nact: {command: setFeedRate, args: {feedRate: \"double(twin.reported.feedRate) * 0.8\"}}\n", true},
		{"alarm message", "decide: {when: band > 1.0}\nact: {alarm: {name: a, severity: low, message: \"string(twin.version)\"}}\n", true},
		{"verify", "decide: {when: band > 1.0}\nact: {command: setFeedRate, args: {feedRate: feed}, verify: {expect: \"twin.version > 0\", within: 1m}}\n", true},
		{"interlock", "decide: {when: band > 1.0}\nact: {command: setFeedRate, args: {feedRate: feed}}\nguard: {interlocks: {door: \"has(twin.reported.doorOpen)\"}}\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse([]byte(head + c.rest))
			if err != nil {
				t.Fatal(err)
			}
			d.Tenant = "demo"
			comp, err := CompileWith(e.ctx, e.reg, d)
			if err != nil {
				t.Fatal(err)
			}
			if comp.readsTwin != c.want {
				t.Fatalf("readsTwin = %v, want %v", comp.readsTwin, c.want)
			}
		})
	}
}
