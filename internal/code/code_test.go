package code

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Code
		wantPos int    // checked only on error
		wantMsg string // substring of the error, empty = success expected
	}{
		{in: "acme:pump-1", want: Code{"acme", "pump-1"}},
		{in: "a:b", want: Code{"a", "b"}},
		{in: "acme-corp:SN_0042-X", want: Code{"acme-corp", "SN_0042-X"}},
		{in: "a1-b2-c3:0", want: Code{"a1-b2-c3", "0"}},
		{in: strings.Repeat("a", 32) + ":" + strings.Repeat("Z", 64), want: Code{strings.Repeat("a", 32), strings.Repeat("Z", 64)}},

		{in: "", wantPos: -1, wantMsg: `missing ":"`},
		{in: "acme", wantPos: -1, wantMsg: `missing ":"`},
		{in: "Acme:x", wantPos: 0, wantMsg: "namespace must start with a lowercase letter"},
		{in: ":x", wantPos: 0, wantMsg: "namespace is empty"},
		{in: "1acme:x", wantPos: 0, wantMsg: "lowercase letter"},
		{in: "acme-:x", wantPos: 4, wantMsg: "must not end with '-'"},
		{in: "ac--me:x", wantPos: 3, wantMsg: `"--"`},
		{in: "ac_me:x", wantPos: 2, wantMsg: "'_'"},
		{in: "acMe:x", wantPos: 2, wantMsg: "'M'"},
		{in: strings.Repeat("a", 33) + ":x", wantPos: 32, wantMsg: "longer than 32"},
		{in: "acme:", wantPos: 5, wantMsg: "local id is empty"},
		{in: "acme:-x", wantPos: 5, wantMsg: "must start with a letter or digit"},
		{in: "acme:_x", wantPos: 5, wantMsg: "must start with a letter or digit"},
		{in: "acme:x:y", wantPos: 6, wantMsg: "':'"},
		{in: "acme:x/y", wantPos: 6, wantMsg: "'/'"},
		{in: "acme:x+", wantPos: 6, wantMsg: "'+'"},
		{in: "acme:x#", wantPos: 6, wantMsg: "'#'"},
		{in: "acme:x.y", wantPos: 6, wantMsg: "'.'"},
		{in: "acme:x*", wantPos: 6, wantMsg: "'*'"},
		{in: "acme:x>", wantPos: 6, wantMsg: "'>'"},
		{in: "acme:x y", wantPos: 6, wantMsg: "' '"},
		{in: "acme:x\x00", wantPos: 6, wantMsg: "byte 0x00"},
		{in: "acme:pümp", wantPos: 6, wantMsg: "byte 0xc3"},
		{in: "acme:" + strings.Repeat("x", 65), wantPos: 5 + 64, wantMsg: "longer than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("Parse(%q) error: %v", tt.in, err)
				}
				if got != tt.want {
					t.Fatalf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
				}
				if got.String() != tt.in {
					t.Fatalf("String() = %q, want %q", got.String(), tt.in)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%q) = %#v, want error", tt.in, got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if e.Pos != tt.wantPos {
				t.Errorf("Pos = %d, want %d (%v)", e.Pos, tt.wantPos, err)
			}
			if e.Input != tt.in {
				t.Errorf("Input = %q, want %q", e.Input, tt.in)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := Parse("Acme:x")
	want := `invalid code "Acme:x": namespace must start with a lowercase letter (at byte 0)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	_, err = Parse(strings.Repeat("a", 1000))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error for a huge input should be bounded, got %d bytes", len(err.Error()))
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		ns, local string
		ok        bool
		what      string
	}{
		{"acme", "pump-1", true, ""},
		{"", "x", false, "namespace"},
		{"acme", "", false, "local id"},
		{"acme", "a:b", false, "local id"},
		{"ac me", "x", false, "namespace"},
	}
	for _, tt := range tests {
		c, err := New(tt.ns, tt.local)
		if tt.ok {
			if err != nil || c != (Code{tt.ns, tt.local}) {
				t.Errorf("New(%q, %q) = %v, %v", tt.ns, tt.local, c, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.What != tt.what {
			t.Errorf("New(%q, %q) error = %v, want a %s error", tt.ns, tt.local, err, tt.what)
		}
		if !c.IsZero() {
			t.Errorf("New(%q, %q) returned non-zero code %v with an error", tt.ns, tt.local, c)
		}
	}
}

func TestZero(t *testing.T) {
	var c Code
	if !c.IsZero() || c.String() != "" {
		t.Fatalf("zero Code: IsZero=%v String=%q", c.IsZero(), c.String())
	}
	if MustParse("a:b").IsZero() {
		t.Fatal("a:b reported zero")
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse of an invalid code did not panic")
		}
	}()
	MustParse("nope")
}

func TestParsePath(t *testing.T) {
	deep := strings.TrimSuffix(strings.Repeat("a/", 16), "/")
	tests := []struct {
		in      string
		want    []string
		wantPos int
		wantMsg string
	}{
		{in: "plant-1/area-a/line-3/cell-2", want: []string{"plant-1", "area-a", "line-3", "cell-2"}},
		{in: "site", want: []string{"site"}},
		{in: "Shanghai/Pudong/Lamp_0042", want: []string{"Shanghai", "Pudong", "Lamp_0042"}},
		{in: deep, want: strings.Split(deep, "/")},

		{in: "", wantPos: 0, wantMsg: "path is empty"},
		{in: deep + "/a", wantPos: -1, wantMsg: "17 levels"},
		{in: "/a", wantPos: 0, wantMsg: `segment 1 "": segment is empty`},
		{in: "a/", wantPos: 2, wantMsg: `segment 2 "": segment is empty`},
		{in: "a//b", wantPos: 2, wantMsg: "segment 2"},
		{in: "plant-1/area a", wantPos: 12, wantMsg: `segment 2 "area a"`},
		{in: "plant-1/-x", wantPos: 8, wantMsg: "must start with a letter or digit"},
		{in: "p/" + strings.Repeat("x", 65), wantPos: 2 + 64, wantMsg: "longer than 64"},
		{in: "a/b.c", wantPos: 3, wantMsg: "'.'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePath(tt.in)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("ParsePath(%q): %v", tt.in, err)
				}
				if strings.Join(got, "|") != strings.Join(tt.want, "|") {
					t.Fatalf("ParsePath(%q) = %q, want %q", tt.in, got, tt.want)
				}
				if JoinPath(got) != tt.in {
					t.Fatalf("JoinPath = %q, want %q", JoinPath(got), tt.in)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParsePath(%q) error = %v, want *Error", tt.in, err)
			}
			if e.Pos != tt.wantPos {
				t.Errorf("Pos = %d, want %d (%v)", e.Pos, tt.wantPos, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.HasPrefix(err.Error(), "invalid path ") {
				t.Errorf("error %q, want it to start with 'invalid path' and mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestValidPathSegment(t *testing.T) {
	for _, ok := range []string{"a", "Z9", "cell_2", "x-y"} {
		if err := ValidPathSegment(ok); err != nil {
			t.Errorf("ValidPathSegment(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "_a", "a b", strings.Repeat("a", 65)} {
		if err := ValidPathSegment(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidPathSegment(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestTags(t *testing.T) {
	keys := []struct {
		k  string
		ok bool
	}{
		{"a", true},
		{"floor", true},
		{"rated_kw2", true},
		{strings.Repeat("k", 32), true},
		{strings.Repeat("k", 33), false},
		{"", false},
		{"Floor", false},
		{"2floor", false},
		{"_x", false},
		{"a-b", false},
		{"a.b", false},
	}
	for _, tt := range keys {
		err := ValidTagKey(tt.k)
		if (err == nil) != tt.ok {
			t.Errorf("ValidTagKey(%q) = %v, want ok=%v", tt.k, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidTagKey(%q) error does not match ErrInvalid", tt.k)
		}
	}
	values := []struct {
		v  string
		ok bool
	}{
		{"", true},
		{"north wing", true},
		{"3.5 kW (max)", true},
		{`~!@#$%^&*()_+{}|:"<>?[]\'./` + "`", true},
		{strings.Repeat("v", 128), true},
		{strings.Repeat("v", 129), false},
		{"a,b", false},
		{"a;b", false},
		{"a=b", false},
		{"tab\there", false},
		{"new\nline", false},
		{"del\x7f", false},
		{"größe", false},
	}
	for _, tt := range values {
		err := ValidTagValue(tt.v)
		if (err == nil) != tt.ok {
			t.Errorf("ValidTagValue(%q) = %v, want ok=%v", tt.v, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidTagValue(%q) error does not match ErrInvalid", tt.v)
		}
	}
}

// FuzzParse checks that Parse never panics, that accepted codes round-trip
// exactly, and that no accepted code contains a byte with meaning in MQTT
// topics or NATS subjects.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"acme:pump-1", "a:b", "Acme:x", "acme:x:y", "acme:", ":x", "acme--x:1",
		"acme:x/y", "acme:x.y", "acme:*", "acme:>", "acme:#", "acme:+", "acme:pümp",
		strings.Repeat("a", 32) + ":" + strings.Repeat("Z", 64), "\x00:\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not match ErrInvalid", s, err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Pos > len(s) {
				t.Fatalf("Parse(%q) error %#v: bad position", s, err)
			}
			return
		}
		if c.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, c.String())
		}
		if strings.ContainsAny(s, "/+#.*> \x00\t\r\n") {
			t.Fatalf("Parse accepted %q, which contains a topic/subject metacharacter", s)
		}
		if strings.Count(s, ":") != 1 {
			t.Fatalf("Parse accepted %q with %d colons", s, strings.Count(s, ":"))
		}
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				t.Fatalf("Parse accepted non-ASCII %q", s)
			}
		}
		c2, err := Parse(c.String())
		if err != nil || c2 != c {
			t.Fatalf("re-Parse(%q) = %v, %v; want %v", c.String(), c2, err, c)
		}
		if c3, err := New(c.Namespace, c.Local); err != nil || c3 != c {
			t.Fatalf("New(%q, %q) = %v, %v", c.Namespace, c.Local, c3, err)
		}
	})
}
