package hubtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestPkgDoc fails when a package of the module has no package doc
// comment: "// Package x ..." for a library, "// Command x ..." for a main
// package (as tailscale's pkgdoc_test.go does). Test files do not count;
// files excluded with //go:build ignore are skipped.
func TestPkgDoc(t *testing.T) {
	root := moduleRoot(t)
	missing, n, err := undocumentedPackages(root)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("found no packages under %s", root)
	}
	for _, m := range missing {
		t.Errorf("%s", m)
	}
}

// TestPkgDocCheck makes sure the check itself finds what it should.
func TestPkgDocCheck(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"go.mod":            "module example.com/m\n",
		"good/a.go":         "// Package good does things.\npackage good\n",
		"good/b.go":         "package good\n",
		"bad/a.go":          "// Some words.\npackage bad\n",
		"bad/a_test.go":     "// Package bad is documented only in a test.\npackage bad\n",
		"cmd/tool/main.go":  "// Command tool runs.\npackage main\n",
		"cmd/other/main.go": "// Package main runs.\npackage main\n",
		"gen/gen.go":        "//go:build ignore\n\npackage main\n",
		"gen/doc.go":        "// Package gen generates.\npackage gen\n",
		"testdata/x/x.go":   "package x\n",
		"nested/go.mod":     "module example.com/n\n",
		"nested/x/x.go":     "package x\n",
		"prefix/p.go":       "// Package prefixes is another name.\npackage prefix\n",
	}
	for name, content := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	missing, n, err := undocumentedPackages(root)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("found %d packages, want 6", n)
	}
	var got []string
	for _, m := range missing {
		got = append(got, strings.Fields(m)[0])
	}
	if want := []string{"bad", "cmd/other", "prefix"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("undocumented packages %q, want %q:\n%s", got, want, strings.Join(missing, "\n"))
	}
}

// undocumentedPackages walks the module at root and describes each package
// without a doc comment; n is the number of packages found.
func undocumentedPackages(root string) (missing []string, n int, err error) {
	type pkg struct {
		dir, name  string
		files      []string
		documented bool
	}
	pkgs := map[string]*pkg{} // dir + "\x00" + package name
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path == root {
				return nil
			}
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		if ignored(f.Comments, f.Package) {
			return nil
		}
		dir := filepath.Dir(path)
		key := dir + "\x00" + f.Name.Name
		p := pkgs[key]
		if p == nil {
			p = &pkg{dir: dir, name: f.Name.Name}
			pkgs[key] = p
		}
		p.files = append(p.files, name)
		if f.Doc != nil {
			prefix := "Package " + f.Name.Name
			if f.Name.Name == "main" {
				prefix = "Command " + filepath.Base(dir)
			}
			doc := f.Doc.Text()
			if strings.HasPrefix(doc, prefix+" ") || strings.HasPrefix(doc, prefix+"\n") {
				p.documented = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	for _, p := range pkgs {
		if p.documented {
			continue
		}
		rel, _ := filepath.Rel(root, p.dir)
		want := "// Package " + p.name + " ..."
		if p.name == "main" {
			want = "// Command " + filepath.Base(p.dir) + " ..."
		}
		sort.Strings(p.files)
		missing = append(missing, filepath.ToSlash(rel)+" (package "+p.name+", files "+strings.Join(p.files, ", ")+"): needs a doc comment "+want)
	}
	sort.Strings(missing)
	return missing, len(pkgs), nil
}

// ignored reports whether a file carries a //go:build ignore constraint
// before its package clause.
func ignored(comments []*ast.CommentGroup, pkgPos token.Pos) bool {
	for _, g := range comments {
		if g.Pos() >= pkgPos {
			break
		}
		for _, c := range g.List {
			if strings.HasPrefix(c.Text, "//go:build") && strings.Contains(c.Text, "ignore") {
				return true
			}
		}
	}
	return false
}

// moduleRoot finds the directory holding go.mod above the working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}
