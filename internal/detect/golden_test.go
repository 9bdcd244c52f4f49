package detect

// The golden tests run the scripts in testdata/*.test: input series and the
// outputs expected of a detector, one step a line. '#' starts a comment,
// blank lines are skipped. A detector line starts a new detector:
//
//	ewma alpha=<a> [warmup=<n>] [minstd=<s>]
//	cusum [target=<t>] [sigma=<s>] k=<k> h=<h> [warmup=<n>] [learn=true]
//	hyst on=<on> off=<off>
//	delay on=<d> off=<d>
//
// and the steps that follow feed it:
//
//	x <v> -> <score> | <score> notready | notready      (ewma)
//	x <v> -> <hi> <lo> [alarm] | notready               (cusum)
//	x <v> -> on | off                                   (hyst)
//	at <t> <true|false> -> on|off [changed]             (delay)
//	reset                                               (ewma, cusum)
//	params <target> <sigma>                             (cusum: Params)
//	mean <m>, std <s>                                   (ewma: Mean, Std)
//
// Numbers must match within 1e-9 (relative above 1); times <t> are Go
// durations since the epoch.

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
	var (
		ewma  *EWMA
		cusum *CUSUM
		hyst  *Hysteresis
		delay *Delay
	)
	sc := bufio.NewScanner(f)
	line, checks := 0, 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("%s:%d: %s: %s", file, line, strings.TrimSpace(text), fmt.Sprintf(format, a...))
		}
		num := func(s string) float64 {
			t.Helper()
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				fail("%v", err)
			}
			return v
		}
		near := func(what string, got, want float64) {
			t.Helper()
			if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
				fail("%s = %.17g; want %v", what, got, want)
			}
		}
		in, out, arrow := strings.Cut(strings.Join(fields, " "), " -> ")
		ins, outs := strings.Fields(in), strings.Fields(out)
		switch ins[0] {
		case "ewma", "cusum", "hyst", "delay":
			ewma, cusum, hyst, delay = nil, nil, nil, nil
			kv := map[string]string{}
			for _, w := range ins[1:] {
				k, v, ok := strings.Cut(w, "=")
				if !ok {
					fail("%q is not key=value", w)
				}
				kv[k] = v
			}
			get := func(k string) float64 {
				if v, ok := kv[k]; ok {
					delete(kv, k)
					return num(v)
				}
				return 0
			}
			dur := func(k string) time.Duration {
				d, err := time.ParseDuration(kv[k])
				if err != nil {
					fail("%s: %v", k, err)
				}
				delete(kv, k)
				return d
			}
			var err error
			switch ins[0] {
			case "ewma":
				ewma = &EWMA{Alpha: get("alpha"), Warmup: int(get("warmup")), MinStd: get("minstd")}
				err = ewma.Validate()
			case "cusum":
				learn := kv["learn"] == "true"
				delete(kv, "learn")
				cusum = &CUSUM{Target: get("target"), Sigma: get("sigma"), K: get("k"), H: get("h"), Warmup: int(get("warmup")), Learn: learn}
				err = cusum.Validate()
			case "hyst":
				hyst = &Hysteresis{On: get("on"), Off: get("off")}
				err = hyst.Validate()
			case "delay":
				delay = &Delay{On: dur("on"), Off: dur("off")}
				err = delay.Validate()
			}
			if len(kv) > 0 {
				fail("unknown keys %v", kv)
			}
			if err != nil {
				fail("%v", err)
			}
			continue
		case "x":
			if !arrow || len(ins) != 2 {
				fail("want x <v> -> <expected>")
			}
			x := num(ins[1])
			switch {
			case ewma != nil:
				score, ready := ewma.Update(x)
				switch {
				case len(outs) == 1 && outs[0] == "notready":
					if ready {
						fail("ready with %v; want not ready", score)
					}
				case len(outs) == 2 && outs[1] == "notready":
					if ready {
						fail("ready; want not ready")
					}
					near("score", score, num(outs[0]))
				case len(outs) == 1:
					if !ready {
						fail("not ready; want %s", outs[0])
					}
					near("score", score, num(outs[0]))
				default:
					fail("want <score> [notready] | notready")
				}
			case cusum != nil:
				hi, lo, alarm, ready := cusum.Update(x)
				if len(outs) == 1 && outs[0] == "notready" {
					if ready || alarm {
						fail("ready %v alarm %v; want not ready", ready, alarm)
					}
					break
				}
				if len(outs) < 2 || len(outs) > 3 || (len(outs) == 3 && outs[2] != "alarm") {
					fail("want <hi> <lo> [alarm] | notready")
				}
				if !ready {
					fail("not ready")
				}
				near("hi", hi, num(outs[0]))
				near("lo", lo, num(outs[1]))
				if alarm != (len(outs) == 3) {
					fail("alarm = %v", alarm)
				}
			case hyst != nil:
				if len(outs) != 1 || (outs[0] != "on" && outs[0] != "off") {
					fail("want on|off")
				}
				if got := hyst.Update(x); got != (outs[0] == "on") || hyst.State() != got {
					fail("state %v", got)
				}
			default:
				fail("x feeds ewma, cusum or hyst")
			}
		case "at":
			if delay == nil || !arrow || len(ins) != 3 || len(outs) < 1 || len(outs) > 2 {
				fail("want a delay and at <t> <cond> -> on|off [changed]")
			}
			d, err := time.ParseDuration(ins[1])
			if err != nil {
				fail("%v", err)
			}
			cond, err := strconv.ParseBool(ins[2])
			if err != nil {
				fail("%v", err)
			}
			state, changed := delay.Update(d.Milliseconds(), cond)
			wantChanged := len(outs) == 2 && outs[1] == "changed"
			if state != (outs[0] == "on") || changed != wantChanged || delay.State() != state {
				fail("state %v changed %v", state, changed)
			}
		case "reset":
			switch {
			case ewma != nil:
				ewma.Reset()
			case cusum != nil:
				cusum.Reset()
			default:
				fail("reset is for ewma and cusum")
			}
		case "params":
			if cusum == nil || len(ins) != 3 {
				fail("want a cusum and params <target> <sigma>")
			}
			mu, sd, ok := cusum.Params()
			if !ok {
				fail("no params yet")
			}
			near("target", mu, num(ins[1]))
			near("sigma", sd, num(ins[2]))
		case "mean", "std":
			if ewma == nil || len(ins) != 2 {
				fail("want an ewma and %s <v>", ins[0])
			}
			got := ewma.Mean()
			if ins[0] == "std" {
				got = ewma.Std()
			}
			near(ins[0], got, num(ins[1]))
		default:
			fail("unknown command %q", ins[0])
		}
		checks++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if checks == 0 {
		t.Fatalf("%s checks nothing", file)
	}
}
