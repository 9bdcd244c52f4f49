package console

// The demo at a glance: a program that runs the node for a purpose (wanwu
// demo) hands the console what it would tell a newcomer — what runs, where
// to look first, its latest status — and the console shows it at /demo.

import (
	"context"
	"net/http"
	"time"
)

// Glance is what the page at /demo shows.
type Glance struct {
	Title string
	// Intro says in a sentence or two what runs.
	Intro string
	// Facts are short label/value pairs (scenario, devices, edge...).
	Facts []GlanceFact
	// Links are the places to look first, with why.
	Links []GlanceLink
	// Status is the program's latest status block, as its terminal shows
	// it (preformatted text).
	Status string
	// At is when Status was taken.
	At time.Time
}

// GlanceFact is one label and its value.
type GlanceFact struct{ Label, Value string }

// GlanceLink is a console path to look at and why.
type GlanceLink struct{ Label, Path, Why string }

// ShowGlance makes the console serve /demo with what f returns, and adds
// "Demo" to the menu. f is called on each view of the page, with the
// request's context; it must be quick and safe for concurrent use.
func (c *Console) ShowGlance(f func(ctx context.Context) Glance) {
	c.glance.Store(&f)
}

// glancePage shows the glance; without one, the console has no such page.
func (c *Console) glancePage(w http.ResponseWriter, r *http.Request, q *request) error {
	f := c.glance.Load()
	if f == nil {
		return &pageError{Status: http.StatusNotFound, Title: "No demo here",
			Message: "This node is not running a demo.", Next: "Start one with `wanwu demo`; it prints this page's address."}
	}
	g := (*f)(r.Context())
	c.render(w, r, q, http.StatusOK, "demo", view{Title: g.Title, Nav: "demo", Data: g})
	return nil
}
