package cli

// The demo's page in the console (/demo): what runs, where to look first,
// and the status block the terminal shows.

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wanwu-iot/wanwu/internal/console"
	"github.com/wanwu-iot/wanwu/internal/scenario"
)

// demoStatus holds the latest status block the demo printed.
type demoStatus struct {
	block atomic.Pointer[statusShot]
}

type statusShot struct {
	text string
	at   time.Time
}

func (d *demoStatus) set(text string, at time.Time) { d.block.Store(&statusShot{text, at}) }

// demoGlance returns what the console's /demo page shows.
func demoGlance(sc *scenario.Scenario, de *demoEdge, st *demoStatus, started time.Time) func(context.Context) console.Glance {
	g := console.Glance{
		Title: "wanwu demo",
		Intro: "A hub with a simulated plant and city on every network profile: devices report over MQTT and CoAP, closed loops act on what they sense, and you can operate all of it from here.",
	}
	if sc.Description != "" {
		g.Intro = sc.Description + " " + g.Intro
	}
	total := 0
	var classes []string
	for _, c := range sc.Classes {
		total += c.Count
		where := c.Network
		if c.Edge && de != nil {
			where += ", behind the edge"
		}
		classes = append(classes, fmt.Sprintf("%d %s (%s)", c.Count, c.Name, where))
	}
	g.Facts = []console.GlanceFact{
		{Label: "Scenario", Value: sc.Name},
		{Label: "Tenant", Value: sc.Tenant},
		{Label: "Devices", Value: fmt.Sprintf("%d: %s", total, strings.Join(classes, "; "))},
		{Label: "Started", Value: started.UTC().Format("2006-01-02 15:04:05 UTC")},
	}
	if de != nil {
		g.Facts = append(g.Facts, console.GlanceFact{Label: "Edge", Value: de.edge.Code() + ", its own console at " + de.edge.URL() + "/"})
	}
	object := func(kind string) (string, bool) {
		for _, c := range sc.Classes {
			if c.Kind == kind {
				return sc.Tenant + ":" + c.DeviceID(0), true
			}
		}
		return "", false
	}
	for _, l := range []struct{ kind, why string }{
		{scenario.KindCNC, "a spindle: its vibration live, a command (setFeedRate) it carries out"},
		{scenario.KindChiller, "a chiller: edit its desired setpoint (the twin)"},
		{scenario.KindWaterMeter, "a sleeping water meter: a command waits for it to wake"},
		{scenario.KindPump, "a pump of the station: its start and its alarms"},
	} {
		if code, ok := object(l.kind); ok {
			g.Links = append(g.Links, console.GlanceLink{Label: code, Path: "/objects/" + url.PathEscape(code), Why: l.why})
		}
	}
	g.Links = append(g.Links,
		console.GlanceLink{Label: "Loops", Path: "/loops", Why: "the closed loops, their decisions and evidence"},
		console.GlanceLink{Label: "Approvals", Path: "/approvals", Why: "the chillers' setpoint shifts wait for a person"},
		console.GlanceLink{Label: "Alarms", Path: "/alarms", Why: "acknowledge and shelve"},
		console.GlanceLink{Label: "Audit", Path: "/audit", Why: "every change, in a log whose entries your browser can verify"},
		console.GlanceLink{Label: "Models", Path: "/models", Why: "the thing models of the scenario's kinds"},
		console.GlanceLink{Label: "ML models", Path: "/ml", Why: "the spindles' anomaly model, trained at the start; the spindle-anomaly loop scores with it (in shadow); after the learning loop, its rollouts: version 2 promoted by its gates, a bad version 3 rolled back"},
		console.GlanceLink{Label: "Datasets", Path: "/datasets?tenant=" + url.QueryEscape(sc.Tenant), Why: "the windows the learning loop labelled, as a dataset version with its quality scores; train a model on it"},
		console.GlanceLink{Label: "Labels", Path: "/labels?tenant=" + url.QueryEscape(sc.Tenant), Why: "windows captured around alarms and decisions, waiting for your label"},
	)
	if de != nil {
		g.Links = append(g.Links, console.GlanceLink{Label: "Edge " + de.edge.Code(), Path: "/edges/" + url.PathEscape(de.edge.Code()), Why: "its link, its backlog while the link is cut"})
	}
	return func(context.Context) console.Glance {
		out := g
		if s := st.block.Load(); s != nil {
			out.Status, out.At = s.text, s.at
		}
		return out
	}
}
