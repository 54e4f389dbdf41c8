package raidstorage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// ReasonAdded is the reason of a child a reload added: it starts degraded
// and is brought in by a recovery (auto-recover, or zeoraid ctl recover).
const ReasonAdded = "added by reload"

var _ stack.Reconfigurer = (*Storage)(nil)

// Reconfigure implements stack.Reconfigurer (docs/reload.md): the options
// change in place, children whose storage stayed keep their state,
// children added start degraded "added by reload", and children removed
// (or whose storage was replaced, which counts as removed and added) leave
// the RAID once their calls in flight ended. Refused: removing every
// optimal child, and an added child that cannot be a mirror (no restore)
// or lacks a capability the RAID offers its clients. An added child that
// does not answer within call-timeout (a server still down) is added all
// the same; its recovery checks what it supports.
func (r *Storage) Reconfigure(ctx context.Context, n *stack.Node, opts any) (stack.Change, error) {
	o, ok := opts.(*Options)
	if !ok {
		return nil, fmt.Errorf("raidstorage: options of type %T, want *Options", opts)
	}
	if len(n.Children) != len(n.ChildNames) || len(n.Children) == 0 {
		return nil, errors.New("a raidstorage needs at least one child storage section")
	}
	if err := o.Validate(len(n.Children)); err != nil {
		return nil, err
	}
	ch := &change{r: r, opts: *o}
	unreached := r.probeAdded(ctx, n, o.CallTimeout)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, stack.ErrClosed
	}
	keep := map[*child]bool{}
	optimalLeft := 0
	for i, st := range n.Children {
		name := n.ChildNames[i]
		if c := r.byName[name]; c != nil && c.st == st {
			keep[c] = true
			ch.next = append(ch.next, c)
			if c.state == Optimal {
				optimalLeft++
			}
			continue
		}
		c := &child{name: name, st: st, state: Degraded, reason: ReasonAdded, expect: map[stack.Tid]bool{}, commitsAtDegrade: -1}
		if err, ok := unreached[st]; ok {
			// A remote server that does not answer yet cannot tell what
			// it supports: as at start-up, the recovery checks it.
			r.log.WithError(err).WithField("child", name).Warn("child added by reload is not reachable yet; its capabilities are checked when it is recovered")
		} else {
			caps := st.Capabilities()
			if !caps.Restore {
				return nil, fmt.Errorf("child %q cannot be a mirror: it does not accept the RAID's tids (no restore capability)", name)
			}
			if missing := missingCaps(caps, r.caps); missing != "" {
				return nil, fmt.Errorf("child %q lacks %s, which the RAID offers its clients", name, missing)
			}
			if err := unimplemented(c); err != nil {
				return nil, err
			}
		}
		ch.next = append(ch.next, c)
		ch.added = append(ch.added, c)
	}
	for _, c := range r.children {
		if !keep[c] {
			ch.removed = append(ch.removed, c)
		}
	}
	if optimalLeft == 0 && len(ch.removed) > 0 {
		return nil, errors.New("refused: the reload would remove every optimal child")
	}
	return ch, nil
}

// addedProbeLimit bounds how long a reload waits for an added child to
// answer (a <zeoclient> opened with wait false is still connecting).
const addedProbeLimit = 5 * time.Second

// probeAdded asks every child of n that is not one of the RAID's for its
// last tid, in parallel, as the start-up does: a backend failure is asked
// again until call-timeout (at most addedProbeLimit). It returns the
// children that did not answer, with the last error.
func (r *Storage) probeAdded(ctx context.Context, n *stack.Node, callTimeout time.Duration) map[stack.Storage]error {
	r.mu.Lock()
	var added []stack.Storage
	for i, st := range n.Children {
		if c := r.byName[n.ChildNames[i]]; c == nil || c.st != st {
			added = append(added, st)
		}
	}
	r.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, min(callTimeout, addedProbeLimit))
	defer cancel()
	errs := make([]error, len(added))
	var wg sync.WaitGroup
	for i, st := range added {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, errs[i] = st.LastTransaction(pctx)
				if errs[i] == nil || !stack.IsBackendFailure(errs[i]) {
					return
				}
				select {
				case <-pctx.Done():
					return
				case <-time.After(probeEvery):
				}
			}
		}()
	}
	wg.Wait()
	out := map[stack.Storage]error{}
	for i, st := range added {
		if errs[i] != nil {
			out[st] = errs[i]
		}
	}
	return out
}

// change is a prepared reconfiguration of a RAID.
type change struct {
	r       *Storage
	opts    Options
	next    []*child // the children after the change, in configuration order
	added   []*child
	removed []*child
	summary []string
}

// Apply implements stack.Change. It takes the RAID's commit lock, so that
// neither a commit nor a recovery's final catch-up sees the children
// change under it.
func (ch *change) Apply() {
	r := ch.r
	r.commit <- struct{}{}
	defer func() { <-r.commit }()
	r.mu.Lock()
	old := r.options()
	ch.summary = optionChanges(old, ch.opts)
	r.opts.Store(&ch.opts)
	for _, c := range ch.removed {
		if r.rec != nil && r.rec.target == c {
			r.rec.cancel()
		}
		delete(r.byName, c.name)
		ch.summary = append(ch.summary, fmt.Sprintf("child %s removed (was %s)", c.name, c.state))
	}
	for i, c := range ch.next {
		c.index = i
		r.byName[c.name] = c
	}
	r.children = ch.next
	for _, c := range ch.added {
		ch.summary = append(ch.summary, fmt.Sprintf("child %s added (degraded: %s)", c.name, ReasonAdded))
	}
	status := r.statusLocked()
	r.mu.Unlock()
	for _, c := range ch.added {
		c.events = make(chan stack.Event, 16)
		c.st.Watch(c.events)
		r.watch.Add(1)
		go r.watchChild(c)
	}
	for _, c := range ch.removed {
		c.st.Unwatch(c.events) // ends its watchChild
	}
	r.log.WithFields(logrus.Fields{"status": status, "changes": strings.Join(ch.summary, "; ")}).Info("RAID reconfigured")
}

// Discard implements stack.Change: nothing was changed yet.
func (ch *change) Discard() {}

// Summary implements stack.Change.
func (ch *change) Summary() []string {
	if ch.summary != nil {
		return ch.summary
	}
	s := optionChanges(ch.r.options(), ch.opts)
	for _, c := range ch.removed {
		s = append(s, "child "+c.name+" removed")
	}
	for _, c := range ch.added {
		s = append(s, "child "+c.name+" added")
	}
	return s
}

// Release implements stack.Change: it waits until no read is in flight on
// a removed child.
func (ch *change) Release(ctx context.Context) error {
	r := ch.r
	var waits []chan struct{}
	r.mu.Lock()
	for _, c := range ch.removed {
		if c.calls > 0 {
			if c.idle == nil {
				c.idle = make(chan struct{})
			}
			waits = append(waits, c.idle)
		}
	}
	r.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// optionChanges describes what differs between two option sets.
func optionChanges(a, b Options) []string {
	var out []string
	add := func(key string, x, y any) {
		if x != y {
			out = append(out, fmt.Sprintf("%s %v -> %v", key, x, y))
		}
	}
	add("read-distribution", a.ReadDistribution, b.ReadDistribution)
	add("write-quorum", a.WriteQuorum, b.WriteQuorum)
	add("fail-mode", a.FailMode, b.FailMode)
	add("call-timeout", a.CallTimeout, b.CallTimeout)
	add("recovery-rate", a.RecoveryRate, b.RecoveryRate)
	add("auto-recover", a.AutoRecover, b.AutoRecover)
	return out
}
