package server

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// queue is the FIFO of runs to execute. A run is queued at most once; a run
// asked for while it executes is queued again when it finishes.
type queue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	items   []string
	queued  map[string]bool
	running map[string]bool
	again   map[string]bool
	closed  bool
}

func newQueue() *queue {
	q := &queue{queued: map[string]bool{}, running: map[string]bool{}, again: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue) push(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.queued[id] {
		return
	}
	if q.running[id] {
		q.again[id] = true
		return
	}
	q.queued[id] = true
	q.items = append(q.items, id)
	q.cond.Signal()
}

// pop takes the next run and marks it running; false when closed.
func (q *queue) pop() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	id := q.items[0]
	q.items[0] = ""
	q.items = q.items[1:]
	delete(q.queued, id)
	q.running[id] = true
	return id, true
}

// finish marks a run done and reports whether it was asked for again.
func (q *queue) finish(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.running, id)
	again := q.again[id]
	delete(q.again, id)
	return again && !q.closed
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) stats() (queued, running int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), len(q.running)
}

func (q *queue) isQueued(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued[id] || q.running[id]
}

// timers wakes waiting runs when they are due: a min-heap of wake-up times,
// one entry per run, and one goroutine for all of them.
type timers struct {
	mu   sync.Mutex
	h    timerHeap
	byID map[string]*timer
	kick chan struct{}
}

type timer struct {
	at    time.Time
	id    string
	index int
}

type timerHeap []*timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

func newTimers() *timers {
	return &timers{byID: map[string]*timer{}, kick: make(chan struct{}, 1)}
}

func (t *timers) add(id string, at time.Time) {
	t.mu.Lock()
	if e, ok := t.byID[id]; ok {
		e.at = at
		heap.Fix(&t.h, e.index)
	} else {
		e := &timer{at: at, id: id}
		heap.Push(&t.h, e)
		t.byID[id] = e
	}
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

func (t *timers) remove(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byID[id]; ok {
		heap.Remove(&t.h, e.index)
		delete(t.byID, id)
	}
}

func (t *timers) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.h)
}

// loop fires due timers until ctx ends.
func (t *timers) loop(ctx context.Context, fire func(id string)) {
	tick := time.NewTimer(time.Hour)
	defer tick.Stop()
	for {
		var due []string
		wait := time.Hour
		now := time.Now()
		t.mu.Lock()
		for len(t.h) > 0 && !t.h[0].at.After(now) {
			e := heap.Pop(&t.h).(*timer)
			delete(t.byID, e.id)
			due = append(due, e.id)
		}
		if len(t.h) > 0 {
			wait = t.h[0].at.Sub(now)
		}
		t.mu.Unlock()
		for _, id := range due {
			fire(id)
		}
		tick.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		case <-tick.C:
		}
	}
}

// watchers lets API requests wait for a run's state to change. Every
// channel handed out is removed again: by notify, or by the request's
// unwatch when it stops waiting, so polls that time out and ids that do
// not exist leave nothing behind.
type watchers struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{}
}

func newWatchers() *watchers { return &watchers{m: map[string]map[chan struct{}]struct{}{}} }

// watch returns a channel closed at the run's next state change.
func (w *watchers) watch(id string) chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	set := w.m[id]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		w.m[id] = set
	}
	set[ch] = struct{}{}
	w.mu.Unlock()
	return ch
}

// unwatch forgets a channel that watch returned (if notify has not).
func (w *watchers) unwatch(id string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if set := w.m[id]; set != nil {
		delete(set, ch)
		if len(set) == 0 {
			delete(w.m, id)
		}
	}
}

func (w *watchers) notify(id string) {
	w.mu.Lock()
	set := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	for ch := range set {
		close(ch)
	}
}

// len is the number of channels handed out and not yet removed.
func (w *watchers) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, set := range w.m {
		n += len(set)
	}
	return n
}
