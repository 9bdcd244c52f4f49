package alarm

import "testing"

func TestIsID(t *testing.T) {
	for s, want := range map[string]bool{
		"4102a93a4f046af4d7697a5f":  true,
		"4102A93A4F046AF4D7697A5F":  false, // ids are lowercase
		"4102a93a4f046af4d7697a5":   false,
		"4102a93a4f046af4d7697a5f0": false,
		"would raise chatter":       false,
		"":                          false,
	} {
		if got := IsID(s); got != want {
			t.Errorf("IsID(%q) = %v, want %v", s, got, want)
		}
	}
}
