package feature

// The golden tests run the scripts in testdata/*.test. A script is a
// sequence of lines; '#' starts a comment, blank lines are skipped. The
// commands:
//
//	spec fn=<fn> kind=<sliding|tumbling> (duration=<d>|count=<n>) [lateness=<d>]
//	        starts a new State (the spec must validate)
//	spec! <same>  the spec must not validate; a State from it refuses samples
//	add <t> <v> [<reason>]
//	        Add(t, v); without a reason it must be taken with no reason;
//	        "duplicate" must be taken as a duplicate; "late", "not-finite"
//	        and "invalid-spec" must be refused for that reason
//	fill <t0> <step> <n> <v0> [<dv>]
//	        adds n samples at t0 + i·step of value v0 + i·dv, each taken
//	        with no reason
//	eval <t> <v>|none [~<tol>]
//	        Value(t) must be v within a relative tolerance (default 1e-9;
//	        absolute below 1), or not ok
//	len <n>, late <n>, dropped <n>
//	        Len, Late, Dropped must be n
//
// Times <t> are Go durations since the epoch ("0s", "1.5s", "-5s",
// "250ms"); values are Go floats ("NaN", "+Inf" too).

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.test"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.test")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runScript(t, file) })
	}
}

func runScript(t *testing.T, file string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st *State
	sc := bufio.NewScanner(f)
	line := 0
	checks := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d: %s", file, line, strings.TrimSpace(text))
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("%s: %s (state %v)", where, fmt.Sprintf(format, a...), st)
		}
		if fields[0] != "spec" && fields[0] != "spec!" && st == nil {
			fail("no spec yet")
		}
		args := fields[1:]
		switch fields[0] {
		case "spec", "spec!":
			s, err := parseSpec(args)
			if err != nil {
				fail("%v", err)
			}
			verr := s.Validate()
			if fields[0] == "spec" && verr != nil {
				fail("spec does not validate: %v", verr)
			}
			if fields[0] == "spec!" && verr == nil {
				fail("spec validates; want an error")
			}
			st = NewState(s)
		case "add":
			if len(args) < 2 || len(args) > 3 {
				fail("want add <t> <v> [<reason>]")
			}
			ts, v := parseTime(t, where, args[0]), parseFloat(t, where, args[1])
			want := ""
			if len(args) == 3 {
				want = strings.ReplaceAll(args[2], "-", " ")
			}
			ok, reason := st.Add(ts, v)
			wantOK := want == "" || want == ReasonDuplicate
			if ok != wantOK || reason != want {
				fail("Add = %v, %q; want %v, %q", ok, reason, wantOK, want)
			}
			checks++
		case "fill":
			if len(args) < 4 || len(args) > 5 {
				fail("want fill <t0> <step> <n> <v0> [<dv>]")
			}
			t0, step := parseTime(t, where, args[0]), parseTime(t, where, args[1])
			n, err := strconv.Atoi(args[2])
			if err != nil {
				fail("%v", err)
			}
			v0, dv := parseFloat(t, where, args[3]), 0.0
			if len(args) == 5 {
				dv = parseFloat(t, where, args[4])
			}
			for i := range n {
				if ok, reason := st.Add(t0+int64(i)*step, v0+float64(i)*dv); !ok || reason != "" {
					fail("sample %d: Add = %v, %q", i, ok, reason)
				}
			}
			checks++
		case "eval":
			if len(args) < 2 || len(args) > 3 {
				fail("want eval <t> <v>|none [~<tol>]")
			}
			ts := parseTime(t, where, args[0])
			got, ok := st.Value(ts)
			if args[1] == "none" {
				if ok {
					fail("Value = %v; want none", got)
				}
				checks++
				continue
			}
			want := parseFloat(t, where, args[1])
			tol := 1e-9
			if len(args) == 3 {
				tol = parseFloat(t, where, strings.TrimPrefix(args[2], "~"))
			}
			if !ok {
				fail("Value = none; want %v", want)
			}
			if math.Abs(got-want) > tol*math.Max(1, math.Abs(want)) {
				fail("Value = %.17g; want %v", got, want)
			}
			checks++
		case "len", "late", "dropped":
			if len(args) != 1 {
				fail("want %s <n>", fields[0])
			}
			want, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				fail("%v", err)
			}
			got := map[string]uint64{"len": uint64(st.Len()), "late": st.Late(), "dropped": st.Dropped()}[fields[0]]
			if got != want {
				fail("%s = %d; want %d", fields[0], got, want)
			}
			checks++
		default:
			fail("unknown command %q", fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if checks == 0 {
		t.Fatalf("%s checks nothing", file)
	}
}

// parseSpec parses the key=value words of a spec line.
func parseSpec(words []string) (Spec, error) {
	var s Spec
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return s, fmt.Errorf("%q is not key=value", w)
		}
		var err error
		switch k {
		case "fn":
			s.Fn = Fn(v)
		case "kind":
			s.Window.Kind = WindowKind(v)
		case "duration":
			s.Window.Duration, err = time.ParseDuration(v)
		case "count":
			s.Window.Count, err = strconv.Atoi(v)
		case "lateness":
			s.Window.Lateness, err = time.ParseDuration(v)
		default:
			return s, fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return s, fmt.Errorf("%s: %w", k, err)
		}
	}
	return s, nil
}

func parseTime(t *testing.T, where, s string) int64 {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: time: %v", where, err)
	}
	return d.Milliseconds()
}

func parseFloat(t *testing.T, where, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%s: value: %v", where, err)
	}
	return v
}
