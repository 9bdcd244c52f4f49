package thingmodel

import (
	_ "embed"
	"strings"
)

// The registry lives in a text file rather than a Go literal so that a reviewer
// can diff it against the IANA registries line by line.
//
//go:embed units.txt
var unitsTxt string

var units = parseUnits(unitsTxt)

func parseUnits(txt string) map[string]bool {
	u := make(map[string]bool)
	for _, line := range strings.Split(txt, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		u[name] = true
	}
	return u
}

// KnownUnit reports whether u is a SenML unit name from the RFC 8428 §12.1
// registry or the RFC 8798 secondary-unit registry.
func KnownUnit(u string) bool { return units[u] }
