package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set by release builds (scripts/release.sh, the
// Dockerfile) with
//
//	-ldflags "-X github.com/wanwu-iot/wanwu/internal/cli.Version=v1.2.3
//	          -X github.com/wanwu-iot/wanwu/internal/cli.Commit=<git rev-parse HEAD>"
//
// Otherwise they stay empty and 'wanwu version' reports what the go command
// stamped: the module version and the VCS commit. go build stamps those in a
// git checkout, but not in a linked git worktree (golang/go#58218) nor
// without .git (a docker build), which is why release builds pass them.
var (
	Version = ""
	Commit  = ""
)

// develVersion is what the go command calls a main module it could not
// version (go run, go test, a build outside a VCS checkout).
const develVersion = "(devel)"

// buildInfo is what 'wanwu version' reports.
type buildInfo struct {
	Version   string // release version, else module version, else "(devel)"
	Revision  string // VCS commit; "" when the binary carries no VCS information
	Time      string // commit time, RFC 3339 (stamped by the go command only)
	Modified  bool   // the working tree had uncommitted changes (stamped only)
	GoVersion string
	Platform  string // GOOS/GOARCH
}

// readBuildInfo combines the release version and commit set at link time
// with what the go command stamped into the binary (bi may be nil). What was
// set at link time wins: the release script knows the commit even where the
// go command stamps none, or another repository's (a worktree nested in
// another checkout, golang/go#64772).
func readBuildInfo(release, commit string, bi *debug.BuildInfo) buildInfo {
	b := buildInfo{Version: release, Revision: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != develVersion {
			b.Version = bi.Main.Version
		}
	}
	if bi != nil && commit == "" {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = develVersion
	}
	return b
}

// currentBuild is the build information of this binary.
func currentBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return readBuildInfo(Version, Commit, bi)
}

func (b buildInfo) write(w io.Writer) {
	fmt.Fprintf(w, "wanwu %s\n", b.Version)
	switch {
	case b.Revision == "":
		// go run and go test never stamp VCS information; go build does
		// inside a git checkout (not a worktree) unless -buildvcs=false.
		fmt.Fprintln(w, "commit  unknown: no VCS information in this binary (go run; or go build outside a git checkout, in a git worktree or with -buildvcs=false)")
	default:
		c := b.Revision
		if b.Time != "" {
			c += " (" + b.Time + ")"
		}
		if b.Modified {
			c += ", with uncommitted changes"
		}
		fmt.Fprintf(w, "commit  %s\n", c)
	}
	fmt.Fprintf(w, "go      %s %s\n", b.GoVersion, b.Platform)
}

func runVersion(e *env, args []string) error {
	fs := newFlagSet("version")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	currentBuild().write(e.stdout)
	return nil
}
