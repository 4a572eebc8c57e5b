package cascade

import "sync"

// queue hands functions to the goroutine that owns some state (the
// cascade's control loop, a trunk's loop). Pushing never blocks, so pion
// callbacks and core event handlers can push while the owner is busy
// calling into pion or the core, which may be waiting on them.
type queue struct {
	mu     sync.Mutex
	fns    []func()
	signal chan struct{}
}

func newQueue() *queue { return &queue{signal: make(chan struct{}, 1)} }

// push queues fn to run on the owner's goroutine.
func (q *queue) push(fn func()) {
	q.mu.Lock()
	q.fns = append(q.fns, fn)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// take returns the queued functions, oldest first, and empties the queue.
func (q *queue) take() []func() {
	q.mu.Lock()
	defer q.mu.Unlock()
	fns := q.fns
	q.fns = nil
	return fns
}
