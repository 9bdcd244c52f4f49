package mqtt

import (
	"errors"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/code"
)

// Topic root and kinds of the device protocol (docs/PROTOCOL.md §1.2).
const (
	root = "wanwu/v1/"

	KindTelemetry = "telemetry"
	KindEvent     = "events"
	KindErrors    = "errors"
	KindStatus    = "status"
	KindTwin      = "twin"
	KindCommands  = "commands"
	KindOTA       = "ota"
	// KindAlarms carries the alarms of an object to integrations (hub →
	// subscribers; nobody publishes there).
	KindAlarms = "alarms"
)

// ErrTopic is returned for a topic outside the device protocol.
var ErrTopic = errors.New("not a wanwu v1 device topic")

// Topic is a parsed device topic wanwu/v1/<tenant>/<id>/<kind>[/<rest>].
type Topic struct {
	Tenant, ID string
	Kind       string
	Rest       string // after the kind: the event name, "reported", ...
}

// Code is the device code the topic belongs to.
func (t Topic) Code() string { return t.Tenant + ":" + t.ID }

// ParseTopic splits a topic name (not a filter) of the device protocol.
func ParseTopic(topic string) (Topic, error) {
	if !strings.HasPrefix(topic, root) || len(topic) > 512 {
		return Topic{}, ErrTopic
	}
	// Cut, not SplitN: the topic of every message is parsed, and the slice
	// SplitN builds was the only allocation.
	var t Topic
	var ok bool
	rest := topic[len(root):]
	if t.Tenant, rest, ok = strings.Cut(rest, "/"); !ok {
		return Topic{}, ErrTopic
	}
	if t.ID, rest, ok = strings.Cut(rest, "/"); !ok {
		return Topic{}, ErrTopic
	}
	t.Kind, t.Rest, _ = strings.Cut(rest, "/")
	if code.ValidNamespace(t.Tenant) != nil || code.ValidLocal(t.ID) != nil {
		return Topic{}, ErrTopic
	}
	switch t.Kind {
	case KindTelemetry, KindErrors, KindStatus, KindAlarms:
		if t.Rest != "" {
			return Topic{}, ErrTopic
		}
	case KindEvent:
		if !validName(t.Rest) {
			return Topic{}, ErrTopic
		}
	case KindTwin, KindCommands, KindOTA:
		if t.Rest == "" {
			return Topic{}, ErrTopic
		}
		for _, level := range strings.Split(t.Rest, "/") {
			if !validLevel(level) {
				return Topic{}, ErrTopic
			}
		}
	default:
		return Topic{}, ErrTopic
	}
	return t, nil
}

// validName checks an event or affordance name: [a-zA-Z][a-zA-Z0-9_]{0,63}.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// validLevel checks a topic level below the kind (command ids, OTA paths):
// 1–64 of [A-Za-z0-9_.-].
func validLevel(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// devicePrefix is the topic prefix a device owns.
func devicePrefix(tenant, id string) string { return root + tenant + "/" + id + "/" }

// stripShare removes a shared-subscription prefix ($share/<group>/) from a filter.
func stripShare(filter string) string {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			return f
		}
		return ""
	}
	return filter
}

// filterWithin reports whether every topic the filter can match lies under
// prefix (which ends in "/"): the filter's levels up to the prefix's must be
// literal and equal.
func filterWithin(filter, prefix string) bool {
	return strings.HasPrefix(filter, prefix) && len(filter) > len(prefix)
}

// tenantOfFilter returns the literal tenant level of a filter under the
// protocol root, or ok=false when that level is a wildcard or absent.
func tenantOfFilter(filter string) (tenant string, ok bool) {
	rest, found := strings.CutPrefix(filter, root)
	if !found {
		return "", false
	}
	tenant, _, _ = strings.Cut(rest, "/")
	if tenant == "" || tenant == "+" || tenant == "#" {
		return "", false
	}
	return tenant, code.ValidNamespace(tenant) == nil
}

// matchFilter reports whether topic matches an MQTT filter (for the
// development listener's ACL).
func matchFilter(filter, topic string) bool {
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		if f != "+" && f != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}

// filterCovered reports whether every topic filter f can match is matched by
// allowed (used for subscriptions on the development listener).
func filterCovered(allowed, f string) bool {
	al, fl := strings.Split(allowed, "/"), strings.Split(f, "/")
	for i, a := range al {
		if a == "#" {
			return true
		}
		if i >= len(fl) {
			return false
		}
		switch {
		case a == "+":
			if fl[i] == "#" {
				return false
			}
		case a != fl[i]:
			return false
		}
	}
	return len(al) == len(fl)
}
