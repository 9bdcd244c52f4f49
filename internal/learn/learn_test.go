package learn_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/learn"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/store"
)

var t0 = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// pumpWindow is a window of acme:pump-N: flow, pressure and power move
// together when healthy; a fault breaks the relation of power to flow.
func pumpWindow(rng *rand.Rand, n int, start time.Time, fault bool) *dataset.Window {
	w := &dataset.Window{Tenant: "acme", Object: fmt.Sprintf("acme:pump-%d", n), Model: "acme:pump@1.0.0", Reason: dataset.ReasonRequest,
		From: start, To: start.Add(2 * time.Minute), Series: map[string][]dataset.Point{}, CapturedAt: start.Add(2 * time.Minute)}
	for i := range 120 {
		t := start.Add(time.Duration(i) * time.Second)
		flow := 40 + 20*math.Sin(float64(i)/15+float64(n)) + rng.NormFloat64()
		pressure := 2 + 0.05*flow + 0.05*rng.NormFloat64()
		power := 5 + 0.2*flow + 0.2*rng.NormFloat64()
		if fault && i > 60 {
			power += 6 // cavitation: the motor works harder for the same flow
		}
		w.Series["flow"] = append(w.Series["flow"], dataset.Point{T: t, V: flow})
		w.Series["pressure"] = append(w.Series["pressure"], dataset.Point{T: t, V: pressure})
		w.Series["power"] = append(w.Series["power"], dataset.Point{T: t, V: power})
	}
	return w
}

func TestTrainFromDataset(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, key, _ := ed25519.GenerateKey(nil)
	al, err := audit.Open(ctx, db.W, key, "wanwu.hub/test")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := dataset.Open(ctx, dataset.Options{DB: db, Audit: al})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := mlreg.Open(ctx, mlreg.Options{DB: db, Audit: al, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var faults []string
	for i := range 24 {
		fault := i%6 == 5
		w, err := ds.AddWindow(ctx, pumpWindow(rng, i%4, t0.Add(time.Duration(i)*time.Hour), fault))
		if err != nil {
			t.Fatal(err)
		}
		if fault {
			faults = append(faults, w.ID)
			if _, err := ds.AddLabel(ctx, "ann", "acme", dataset.Label{Window: w.ID, Kind: dataset.KindTruePositive, Note: "cavitation"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := ds.Build(ctx, "ann", "acme", "pumps", dataset.Query{}); err != nil {
		t.Fatal(err)
	}
	spec := learn.Spec{Dataset: "pumps", Model: "pump-normal",
		Inputs: []learn.Input{{"flow", "flow"}, {"pressure", "pressure"}, {"power", "power"}}}
	rec, rep, err := learn.Train(ctx, ds, reg, "ann", "acme", spec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != "1" || rep.Windows != 24 || rep.FaultWindows != 4 || rep.Rows != 20*120 {
		t.Fatalf("record %s, report %+v", rec.Version, rep)
	}
	if rep.Recall != 1 || rep.NormalFlagged > 0.01 {
		t.Fatalf("validation: recall %v, normal flagged %v", rep.Recall, rep.NormalFlagged)
	}
	m, err := ml.ParseMeta(rec.Meta)
	if err != nil {
		t.Fatal(err)
	}
	if m.Training.Dataset != "pumps" || m.Training.DatasetVersion != "1" || m.Training.Metrics["fault_recall"] != 1 ||
		!strings.Contains(m.Training.Method, "pumps@1") || m.Inputs[2].Name != "power" {
		t.Fatalf("meta %+v", m)
	}
	// The next training is the next version.
	rec2, _, err := learn.Train(ctx, ds, reg, "ann", "acme", spec)
	if err != nil || rec2.Version != "2" {
		t.Fatalf("second training: %v, %v", rec2, err)
	}
	for _, tc := range []struct {
		spec learn.Spec
		want string
	}{
		{learn.Spec{Dataset: "pumps", Model: "x", Inputs: []learn.Input{{"flow", "nope"}}}, "0 rows of normal data"},
		{learn.Spec{Dataset: "pumps", Model: "x", Method: "svm", Inputs: spec.Inputs}, "method"},
		{learn.Spec{Dataset: "pumps", Model: "x"}, "inputs"},
	} {
		if _, _, err := learn.Train(ctx, ds, reg, "ann", "acme", tc.spec); !errors.Is(err, learn.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.spec, err, tc.want)
		}
	}
	if _, _, err := learn.Train(ctx, ds, reg, "ann", "acme", learn.Spec{Dataset: "nope", Model: "x", Inputs: spec.Inputs}); !errors.Is(err, dataset.ErrNotFound) {
		t.Errorf("an unknown dataset: %v", err)
	}
}
