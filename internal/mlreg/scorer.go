package mlreg

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/wanwu-iot/wanwu/internal/ml"
)

// DefaultScorerSessions is how many loaded sessions a Scorer keeps unless
// told otherwise.
const DefaultScorerSessions = 16

// ErrScorerClosed is returned by Score after Close.
var ErrScorerClosed = errors.New("mlreg: scorer closed")

// Scorer runs registered models, keeping one loaded session per (tenant,
// id, version): at most a bounded number, the least recently used closed
// first. A session in use when it is evicted is closed when its last
// caller is done with it. Safe for concurrent use.
type Scorer struct {
	reg *Registry
	rt  ml.Runtime
	max int

	mu     sync.Mutex
	lru    *list.List // of *scorerEntry, most recent first
	byKey  map[string]*list.Element
	closed bool
}

type scorerEntry struct {
	key     string
	sess    ml.Session
	meta    ml.Meta
	refs    int
	evicted bool
}

// NewScorer returns a scorer of reg's models loaded with rt (nil: gonnx),
// keeping DefaultScorerSessions sessions.
func NewScorer(reg *Registry, rt ml.Runtime) *Scorer {
	return NewScorerSize(reg, rt, DefaultScorerSessions)
}

// NewScorerSize is NewScorer keeping at most n sessions (at least 1).
func NewScorerSize(reg *Registry, rt ml.Runtime, n int) *Scorer {
	if rt == nil {
		rt = ml.NewGonnx()
	}
	return &Scorer{reg: reg, rt: rt, max: max(n, 1), lru: list.New(), byKey: map[string]*list.Element{}}
}

// Score runs the model version (version "": the newest) on features, by
// name; a feature the model takes and features lacks is an error naming
// it (wrapping ml.ErrInput), features it does not take are ignored. It
// returns the Result's Scores (a loop's score map) and the version that
// ran.
func (s *Scorer) Score(ctx context.Context, tenant, id, version string, features map[string]float64) (map[string]float64, string, error) {
	v, err := s.reg.resolve(ctx, tenant, id, version)
	if err != nil {
		return nil, "", err
	}
	version = strconv.Itoa(v)
	e, err := s.acquire(ctx, tenant, id, version)
	if err != nil {
		return nil, version, err
	}
	defer s.release(e)
	x := make([]float64, len(e.meta.Inputs))
	for i, f := range e.meta.Inputs {
		val, ok := features[f.Name]
		if !ok {
			return nil, version, fmt.Errorf("mlreg: model %s@%s: %w: feature %q missing", id, version, ml.ErrInput, f.Name)
		}
		x[i] = val
	}
	res, err := e.sess.Infer(ctx, x)
	if err != nil {
		return nil, version, fmt.Errorf("mlreg: model %s@%s: %w", id, version, err)
	}
	return res.Scores(e.meta), version, nil
}

// acquire returns the entry of a loaded session, loading it on a miss,
// with a reference the caller releases.
func (s *Scorer) acquire(ctx context.Context, tenant, id, version string) (*scorerEntry, error) {
	key := tenant + "\x00" + id + "\x00" + version
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrScorerClosed
	}
	if el, ok := s.byKey[key]; ok {
		s.lru.MoveToFront(el)
		e := el.Value.(*scorerEntry)
		e.refs++
		s.mu.Unlock()
		return e, nil
	}
	s.mu.Unlock()

	// Load outside the lock: a load runs a trial inference.
	rec, err := s.reg.Get(ctx, tenant, id, version)
	if err != nil {
		return nil, err
	}
	meta, err := ml.ParseMeta(rec.Meta)
	if err != nil {
		return nil, fmt.Errorf("mlreg: stored model %s@%s: %w", id, version, err)
	}
	sess, err := s.rt.Load(rec.ONNX, meta)
	if err != nil {
		return nil, fmt.Errorf("mlreg: loading %s@%s: %w", id, version, err)
	}

	var done []ml.Session // closed after the lock: Close waits for a run under way
	defer func() { closeAll(done) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		done = append(done, sess)
		return nil, ErrScorerClosed
	}
	if el, ok := s.byKey[key]; ok { // another caller loaded it meanwhile
		done = append(done, sess)
		s.lru.MoveToFront(el)
		e := el.Value.(*scorerEntry)
		e.refs++
		return e, nil
	}
	e := &scorerEntry{key: key, sess: sess, meta: sess.Meta(), refs: 1}
	s.byKey[key] = s.lru.PushFront(e)
	for s.lru.Len() > s.max {
		done = s.evict(s.lru.Back(), done)
	}
	return e, nil
}

// evict removes an entry (s.mu held) and appends its session to done
// unless a caller still uses it (release closes it then).
func (s *Scorer) evict(el *list.Element, done []ml.Session) []ml.Session {
	e := s.lru.Remove(el).(*scorerEntry)
	delete(s.byKey, e.key)
	e.evicted = true
	if e.refs == 0 {
		done = append(done, e.sess)
	}
	return done
}

func closeAll(ss []ml.Session) {
	for _, sess := range ss {
		_ = sess.Close() // a session's Close has nothing to report but ErrClosed
	}
}

func (s *Scorer) release(e *scorerEntry) {
	s.mu.Lock()
	e.refs--
	last := e.evicted && e.refs == 0
	s.mu.Unlock()
	if last {
		_ = e.sess.Close()
	}
}

// Loaded is how many sessions the scorer holds.
func (s *Scorer) Loaded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// Close closes every session (one in use when its caller is done) and
// refuses later scores.
func (s *Scorer) Close() error {
	var done []ml.Session
	s.mu.Lock()
	s.closed = true
	for s.lru.Len() > 0 {
		done = s.evict(s.lru.Back(), done)
	}
	s.mu.Unlock()
	closeAll(done)
	return nil
}
