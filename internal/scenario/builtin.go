package scenario

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Builtin returns a built-in scenario, parsed: "demo", "city" or "factory"
// (Builtins lists them; builtin/<name>.yaml is the file).
func Builtin(name string) (*Scenario, error) {
	b, err := fs.ReadFile(builtinFS, "builtin/"+name+".yaml")
	if err != nil {
		return nil, fmt.Errorf("scenario: no built-in scenario %q (there are %s)", name, strings.Join(Builtins(), ", "))
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("scenario: built-in %s: %w", name, err)
	}
	return s, nil
}

// Builtins lists the built-in scenarios' names.
func Builtins() []string {
	ents, _ := fs.ReadDir(builtinFS, "builtin")
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
