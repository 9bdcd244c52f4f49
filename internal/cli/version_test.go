package cli

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfo(t *testing.T) {
	vcs := func(rev, at, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "-buildmode", Value: "exe"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: at},
			{Key: "vcs.modified", Value: modified},
		}
	}
	const rev = "e03dece1c0ffee0000000000000000000000beef"
	const unknown = "commit  unknown: no VCS information in this binary (go run; or go build outside a git checkout, in a git worktree or with -buildvcs=false)"
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name    string
		release string // -X Version
		commit  string // -X Commit
		bi      *debug.BuildInfo
		want    buildInfo
		lines   []string // the output, line by line
	}{
		{name: "go run: no module version, no VCS",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/wanwu-iot/wanwu", Version: "(devel)"}},
			want: buildInfo{Version: "(devel)", GoVersion: "go1.26.8", Platform: platform},
			lines: []string{"wanwu (devel)",
				unknown,
				"go      go1.26.8 " + platform}},
		{name: "no build information at all",
			want:  buildInfo{Version: "(devel)", GoVersion: runtime.Version(), Platform: platform},
			lines: []string{"wanwu (devel)", unknown, "go      " + runtime.Version() + " " + platform}},
		{name: "go build in a clean checkout",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261206204840-e03dece1c0ff"},
				Settings: vcs(rev, "2026-12-06T20:48:40Z", "false")},
			want: buildInfo{Version: "v0.0.0-20261206204840-e03dece1c0ff", Revision: rev, Time: "2026-12-06T20:48:40Z", GoVersion: "go1.26.8", Platform: platform},
			lines: []string{"wanwu v0.0.0-20261206204840-e03dece1c0ff",
				"commit  " + rev + " (2026-12-06T20:48:40Z)",
				"go      go1.26.8 " + platform}},
		{name: "go build with uncommitted changes",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261206204840-e03dece1c0ff+dirty"},
				Settings: vcs(rev, "2026-12-06T20:48:40Z", "true")},
			want: buildInfo{Version: "v0.0.0-20261206204840-e03dece1c0ff+dirty", Revision: rev, Time: "2026-12-06T20:48:40Z", Modified: true, GoVersion: "go1.26.8", Platform: platform},
			lines: []string{"wanwu v0.0.0-20261206204840-e03dece1c0ff+dirty",
				"commit  " + rev + " (2026-12-06T20:48:40Z), with uncommitted changes",
				"go      go1.26.8 " + platform}},
		{name: "release build: -X Version wins over the module version",
			release: "v1.2.3",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261206204840-e03dece1c0ff"},
				Settings: vcs(rev, "2026-12-06T20:48:40Z", "false")},
			want:  buildInfo{Version: "v1.2.3", Revision: rev, Time: "2026-12-06T20:48:40Z", GoVersion: "go1.26.8", Platform: platform},
			lines: []string{"wanwu v1.2.3", "commit  " + rev + " (2026-12-06T20:48:40Z)", "go      go1.26.8 " + platform}},
		{name: "release build without VCS (docker build without .git)",
			release: "v1.2.3",
			bi:      &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want:    buildInfo{Version: "v1.2.3", GoVersion: "go1.26.8", Platform: platform},
			lines: []string{"wanwu v1.2.3",
				unknown,
				"go      go1.26.8 " + platform}},
		{name: "release build in a worktree: -X Commit, no VCS stamp",
			release: "v1.2.3", commit: rev,
			bi:    &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want:  buildInfo{Version: "v1.2.3", Revision: rev, GoVersion: "go1.26.8", Platform: platform},
			lines: []string{"wanwu v1.2.3", "commit  " + rev, "go      go1.26.8 " + platform}},
		{name: "-X Commit wins over another repository's stamp",
			release: "v1.2.3", commit: rev,
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20200101000000-0123456789ab+dirty"},
				Settings: vcs("0123456789abcdef0123456789abcdef01234567", "2020-01-01T00:00:00Z", "true")},
			want:  buildInfo{Version: "v1.2.3", Revision: rev, GoVersion: "go1.26.8", Platform: platform},
			lines: []string{"wanwu v1.2.3", "commit  " + rev, "go      go1.26.8 " + platform}},
		{name: "tagged module version (go install ...@v1.2.3)",
			bi:    &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			want:  buildInfo{Version: "v1.2.3", GoVersion: "go1.26.8", Platform: platform},
			lines: []string{"wanwu v1.2.3", unknown, "go      go1.26.8 " + platform}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readBuildInfo(tc.release, tc.commit, tc.bi)
			if got != tc.want {
				t.Errorf("readBuildInfo:\n got %+v\nwant %+v", got, tc.want)
			}
			var out bytes.Buffer
			got.write(&out)
			if want := strings.Join(tc.lines, "\n") + "\n"; out.String() != want {
				t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
			}
		})
	}
}
