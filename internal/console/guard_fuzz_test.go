package console

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzLocalPath: whatever next a link carries, the redirect target is a
// path on this console: it starts with one "/", has no scheme, host or
// control character, and parses back to itself.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"", "/", "/objects/acme:pump-1", "/search?q=a%3Ab", "//evil.example", "/\\evil", "https://evil.example/",
		"/%2F%2Fevil.example", "/a\r\nb", "javascript:alert(1)", "/.//evil", "/%5Cevil", "/signin?next=//x", "/a#b", "\t/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := localPath(next)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") {
			t.Fatalf("localPath(%q) = %q", next, got)
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x20 || c == 0x7f || c == '\\' {
				t.Fatalf("localPath(%q) = %q has byte %#x", next, got, c)
			}
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			t.Fatalf("localPath(%q) = %q parses as %+v (%v)", next, got, u, err)
		}
		if again := localPath(got); again != got {
			t.Fatalf("localPath(%q) = %q, but localPath(%q) = %q", next, got, got, again)
		}
	})
}
