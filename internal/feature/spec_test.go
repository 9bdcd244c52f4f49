package feature

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSpecValidate(t *testing.T) {
	win := func(kind WindowKind, d time.Duration, n int, late time.Duration) Window {
		return Window{Kind: kind, Duration: d, Count: n, Lateness: late}
	}
	tests := []struct {
		name string
		spec Spec
		want string // a part of the error; "" for valid
	}{
		{"sliding time", Spec{Mean, win(Sliding, 10*time.Second, 0, 0)}, ""},
		{"tumbling count", Spec{Kurtosis, win(Tumbling, 0, 100, time.Second)}, ""},
		{"longest", Spec{Rate, win(Sliding, 24*time.Hour, 0, 24*time.Hour)}, ""},
		{"largest count", Spec{Count, win(Sliding, 0, MaxSamples, 0)}, ""},
		{"every fn", Spec{Crest, win(Sliding, 0, 1, 0)}, ""},
		{"unknown fn", Spec{"median", win(Sliding, time.Second, 0, 0)}, `unknown fn "median"`},
		{"empty fn", Spec{"", win(Sliding, time.Second, 0, 0)}, "unknown fn"},
		{"unknown kind", Spec{Mean, win("hopping", time.Second, 0, 0)}, `unknown window kind "hopping"`},
		{"empty kind", Spec{Mean, win("", time.Second, 0, 0)}, "unknown window kind"},
		{"both", Spec{Mean, win(Sliding, time.Second, 5, 0)}, "both a duration"},
		{"neither", Spec{Mean, win(Sliding, 0, 0, 0)}, "neither a duration nor a count"},
		{"negative duration", Spec{Mean, win(Sliding, -time.Second, 0, 0)}, "negative window duration"},
		{"negative count", Spec{Mean, win(Sliding, 0, -1, 0)}, "negative window count"},
		{"negative lateness", Spec{Mean, win(Sliding, time.Second, 0, -time.Second)}, "negative lateness"},
		{"too long", Spec{Mean, win(Sliding, 24*time.Hour+time.Millisecond, 0, 0)}, "longer than 24h"},
		{"too late", Spec{Mean, win(Sliding, time.Second, 0, 25*time.Hour)}, "lateness 25h0m0s is longer"},
		{"too many", Spec{Mean, win(Tumbling, 0, MaxSamples+1, 0)}, "window count 65537 is more than 65536"},
		{"sub-millisecond", Spec{Mean, win(Sliding, 1500*time.Microsecond, 0, 0)}, "whole number of milliseconds"},
		{"sub-millisecond lateness", Spec{Mean, win(Sliding, time.Second, 0, time.Microsecond)}, "lateness 1µs is not a whole"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate(%v) = %v", tt.spec, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%v) = %v; want ErrInvalid with %q", tt.spec, err, tt.want)
			}
		})
	}
}

func TestSpecMaxSamples(t *testing.T) {
	tests := []struct {
		window   Window
		interval time.Duration
		want     int
	}{
		{Window{Kind: Sliding, Count: 50}, time.Millisecond, 50},
		{Window{Kind: Tumbling, Count: 50}, time.Hour, 50},
		{Window{Kind: Sliding, Duration: 10 * time.Second}, time.Second, 11},
		{Window{Kind: Sliding, Duration: 10 * time.Second}, 3 * time.Second, 4},
		{Window{Kind: Sliding, Duration: 10 * time.Second}, 0, 11},  // 0 counts as 1 s
		{Window{Kind: Sliding, Duration: 10 * time.Second}, -1, 11}, // so does a negative one
		{Window{Kind: Tumbling, Duration: time.Minute}, 100 * time.Millisecond, 601},
		{Window{Kind: Sliding, Duration: 24 * time.Hour}, time.Millisecond, MaxSamples},
		{Window{Kind: Sliding, Duration: 65535 * time.Millisecond}, time.Millisecond, MaxSamples},
		{Window{Kind: Sliding, Duration: 65534 * time.Millisecond}, time.Millisecond, MaxSamples - 1},
	}
	for _, tt := range tests {
		s := Spec{Fn: Mean, Window: tt.window}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := s.MaxSamples(tt.interval); got != tt.want {
			t.Errorf("%v MaxSamples(%v) = %d; want %d", s, tt.interval, got, tt.want)
		}
	}
}

func TestFns(t *testing.T) {
	if len(Fns()) != 12 {
		t.Fatalf("Fns() = %v", Fns())
	}
	for _, f := range Fns() {
		if !f.Known() {
			t.Errorf("%q not Known", f)
		}
	}
	if Fn("MEAN").Known() {
		t.Error(`"MEAN" is Known: names are lower case`)
	}
}

// TestMemory checks that a State holds what its window needs, not more: a
// sliding time window of samples a second apart holds the window's worth,
// and a tumbling one lets go of a closed window.
func TestMemory(t *testing.T) {
	st := NewState(Spec{Mean, Window{Kind: Sliding, Duration: 10 * time.Second}})
	for i := range int64(10000) {
		st.Add(i*1000, 1)
	}
	if st.Len() != 10 {
		t.Errorf("sliding 10 s at 1 Hz holds %d samples; want 10", st.Len())
	}
	if b := st.Bytes(); b > 1024 {
		t.Errorf("sliding 10 s at 1 Hz holds %d bytes", b)
	}
	tu := NewState(Spec{Sum, Window{Kind: Tumbling, Duration: 10 * time.Second}})
	for i := range int64(95) {
		tu.Add(i*1000, 1)
	}
	if tu.Len() != 5 {
		t.Errorf("tumbling 10 s holds %d samples at 94 s; want 5", tu.Len())
	}
	if v, ok := tu.Value(100_000); !ok || v != 5 || tu.Len() != 0 {
		t.Errorf("tumbling Value(100 s) = %v, %v, holding %d; want 5, true, 0", v, ok, tu.Len())
	}
	bad := NewState(Spec{Fn: "median"})
	if bad.Err() == nil || !errors.Is(bad.Err(), ErrInvalid) {
		t.Errorf("Err() = %v", bad.Err())
	}
}
