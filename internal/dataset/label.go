package dataset

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// Label kinds.
const (
	KindTruePositive  = "true_positive"  // the alarm or decision was right
	KindFalsePositive = "false_positive" // it was wrong
	KindNormal        = "normal"         // nothing abnormal in the window
	KindClass         = "class"          // the window shows Class
)

// MaxNoteBytes bounds a label's note.
const MaxNoteBytes = 1024

// Label is one person's judgement of a window. A window may carry labels
// from several people (their agreement is a quality score); labelling a
// window again replaces one's own label.
type Label struct {
	// ID is assigned by the store; a replaced label keeps its id and row
	// (a built version may hold it), and the new one gets the next id.
	ID     int64     `json:"id"`
	Window string    `json:"window"`
	Kind   string    `json:"kind"`            // KindTruePositive, KindFalsePositive, KindNormal, KindClass
	Class  string    `json:"class,omitempty"` // for KindClass: [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}
	Note   string    `json:"note,omitempty"`  // at most MaxNoteBytes of UTF-8
	By     string    `json:"by"`              // the actor, set by AddLabel
	At     time.Time `json:"at"`              // set by AddLabel
}

func checkLabel(l *Label) error {
	switch l.Kind {
	case KindTruePositive, KindFalsePositive, KindNormal:
		if l.Class != "" {
			return invalid("class", "only a label of kind class has a class")
		}
	case KindClass:
		if err := checkName("class", l.Class); err != nil {
			return err
		}
	default:
		return invalid("kind", "%q is not one of true_positive, false_positive, normal, class", truncate(l.Kind))
	}
	if len(l.Note) > MaxNoteBytes {
		return invalid("note", "%d bytes, at most %d", len(l.Note), MaxNoteBytes)
	}
	if !utf8.ValidString(l.Note) {
		return invalid("note", "not UTF-8")
	}
	return nil
}

// key is what a label says: its kind, or "class:" and the class.
func (l *Label) key() string {
	if l.Kind == KindClass {
		return KindClass + ":" + l.Class
	}
	return l.Kind
}

// canonLabel is a label's content as digested: without its id, which
// depends on the order labels were given in.
type canonLabel struct {
	Window string `json:"window"`
	By     string `json:"by"`
	AtMS   int64  `json:"at_ms"`
	Kind   string `json:"kind"`
	Class  string `json:"class"`
	Note   string `json:"note"`
}

func (l *Label) canonical() ([]byte, error) {
	return json.Marshal(canonLabel{Window: l.Window, By: l.By, AtMS: l.At.UnixMilli(), Kind: l.Kind, Class: l.Class, Note: l.Note})
}
