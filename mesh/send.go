package mesh

import (
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// target is a member to send to.
type target struct {
	name string
	node *memberlist.Node
}

// batch is one round of the send loop's work.
type batch struct {
	state   []byte   // this node's state, when it is to be published or sent
	publish bool     // gossip state to everyone
	wants   []target // members to ask for their state
	replies []target // members that asked for this node's state
}

// sendLoop does the node's own sending: it publishes this node's state
// after a change (load changes at most once a second), asks members for
// states it lacks, and answers such requests. A burst of changes while a
// round is under way is sent as one in the next round.
func (n *Node) sendLoop() {
	defer n.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		b, wait := n.takeWork(time.Now())
		if b.publish || len(b.wants) > 0 || len(b.replies) > 0 {
			n.send(b)
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-n.done:
			timer.Stop()
			return
		case <-n.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// takeWork takes the work that is due at now. wait is how long until more
// falls due (0: nothing scheduled).
func (n *Node) takeWork(now time.Time) (b batch, wait time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	w := &n.work
	if n.closed {
		return batch{}, 0
	}
	next := func(at time.Time) {
		if d := at.Sub(now); d > 0 && (wait == 0 || d < wait) {
			wait = d
		}
	}
	if w.publishNow || (w.loadPending && now.Sub(w.lastPublish) >= loadInterval) {
		b.publish = true
		w.publishNow, w.loadPending = false, false
		w.lastPublish = now
	} else if w.loadPending {
		next(w.lastPublish.Add(loadInterval))
	}
	for name, due := range w.wants {
		if now.Before(due) {
			next(due)
			continue
		}
		delete(w.wants, name)
		m := n.members[name]
		if m == nil || m.state != StateAlive {
			continue
		}
		// Ask only if the state has not come meanwhile (a join's
		// push/pull brings most).
		if held := n.states[name]; held == nil || held.version < m.metaVersion {
			b.wants = append(b.wants, n.targetLocked(name, m))
		}
	}
	for name := range w.replies {
		delete(w.replies, name)
		if m := n.members[name]; m != nil && m.state == StateAlive {
			b.replies = append(b.replies, n.targetLocked(name, m))
		}
	}
	if b.publish || len(b.replies) > 0 {
		var err error
		b.state, err = encode(kindState, n.selfWireLocked())
		if err != nil {
			n.log.Error().Err(err).Msg("encode state")
			b.publish, b.replies = false, nil
		}
	}
	return b, wait
}

// send does one round of work. A state that fits comfortably in a UDP
// packet is gossiped (and passed on by whoever receives it); a larger one
// goes over TCP to every alive member.
func (n *Node) send(b batch) {
	if b.publish {
		if len(b.state) <= broadcastMaxBytes {
			n.queue.QueueBroadcast(&broadcast{name: n.cfg.NodeName, msg: b.state})
		} else {
			n.mu.Lock()
			targets := n.aliveTargetsLocked()
			n.mu.Unlock()
			n.sendAll(targets, b.state, 0)
		}
	}
	n.sendAll(b.wants, n.wantMsg, 0)
	n.sendAll(b.replies, b.state, 0)
}

// sendAll sends msg over TCP to every target at once, and waits for the
// sends to end, or at most limit when limit is positive (sends still under
// way end within memberlist's TCP timeout).
func (n *Node) sendAll(targets []target, msg []byte, limit time.Duration) {
	if len(targets) == 0 || len(msg) == 0 || n.ml == nil {
		return
	}
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer wg.Done()
			if err := n.ml.SendReliable(t.node, msg); err != nil {
				n.log.Debug().Err(err).Str("node", t.name).Msg("send state")
			}
		}()
	}
	if limit <= 0 {
		wg.Wait()
		return
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func (n *Node) targetLocked(name string, m *member) target {
	return target{name: name, node: &memberlist.Node{Name: name, Addr: m.ip, Port: m.port}}
}

// aliveTargetsLocked are the members memberlist reports alive.
func (n *Node) aliveTargetsLocked() []target {
	var ts []target
	for name, m := range n.members {
		if m.state == StateAlive {
			ts = append(ts, n.targetLocked(name, m))
		}
	}
	return ts
}
