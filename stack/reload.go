package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/zconfig"
)

// ReloadHost is what a Reloader changes besides the storage trees: the
// server (mounts served, live <zeo> keys, listeners) and the logging.
type ReloadHost interface {
	// Prepare readies what cfg needs outside the trees (a listener on a
	// new address, new log handlers) and returns apply, which switches to
	// it and cannot fail, and abort, which drops it. apply returns the
	// summary lines of what it changed.
	Prepare(cfg *Config) (apply func() []string, abort func(), err error)
	// AddMount starts serving a new storage name.
	AddMount(m *Mount) error
	// RemoveMount stops serving a name, disconnecting its clients.
	RemoveMount(name, reason string) *Mount
}

// Reloader re-reads the configuration and applies it to the running
// server all or nothing (docs/reload.md): it builds the new tree over the
// running one (reusing what did not change), prepares the rest, then,
// holding the commit lock of every mount it changes, applies every change
// at once; any error before that point leaves everything as it was.
type Reloader struct {
	// Load reads and decodes the configuration files.
	Load func() (*Config, error)
	// Host is the server side.
	Host ReloadHost
	// Build are the options of every Build (Log, Pool, Import); Previous
	// is set by the Reloader.
	Build BuildOptions
	// CommitTimeout bounds the wait for a commit in progress at a mount's
	// commit lock; past it the reload is refused, so that it never blocks
	// commits for long. Default 10 s.
	CommitTimeout time.Duration
	// Log receives the reload's lines.
	Log logrus.FieldLogger
	// Observe, when set, is told every reload's outcome (the admin
	// endpoint counts them).
	Observe func(ReloadStatus)

	mu     sync.Mutex // one reload at a time; guards tree and mounts
	tree   *Tree
	mounts map[string]*Mount
	retire sync.WaitGroup // old storages waiting to be closed

	smu    sync.Mutex
	status ReloadStatus
}

// ReloadStatus is the outcome of the last reload (zeoraid ctl info).
type ReloadStatus struct {
	When    time.Time // zero: no reload yet
	Trigger string    // what asked for it: "SIGHUP", "file change", "ctl"
	OK      bool
	Error   string   // the error, positioned file:line:col where it has one
	Summary []string // what changed
}

// NewReloader returns a Reloader for the running tree and its mounts.
func NewReloader(tree *Tree, mounts []*Mount) *Reloader {
	r := &Reloader{tree: tree, mounts: map[string]*Mount{}}
	for _, m := range mounts {
		r.mounts[m.Name()] = m
	}
	return r
}

// Status returns the outcome of the last reload.
func (r *Reloader) Status() ReloadStatus {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.status
}

// Tree returns the running tree.
func (r *Reloader) Tree() *Tree {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tree
}

// mountPlan is what a reload does to one storage name.
type mountPlan struct {
	name    string
	mount   *Mount // nil for an added name
	root    *Built // nil for a removed name
	changes []*Built
	swap    bool // the root was opened anew: the data behind the name changed
}

func (p *mountPlan) touched() bool { return p.root == nil || p.swap || len(p.changes) > 0 }

// Reload reads the configuration and applies it. It returns the summary of
// what changed, or an error, in which case nothing changed.
func (r *Reloader) Reload(ctx context.Context, trigger string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	summary, err := r.reload(ctx)
	st := ReloadStatus{When: time.Now(), Trigger: trigger, OK: err == nil, Summary: summary}
	log := r.logger().WithField("trigger", trigger)
	if err != nil {
		st.Error = err.Error()
		var l zconfig.ErrorList
		if errors.As(err, &l) {
			for _, e := range l {
				log.Error("reload refused: " + e.Error())
			}
		} else {
			log.WithError(err).Error("reload refused; the running configuration stays")
		}
	} else {
		log.WithField("changes", len(summary)).Info("configuration reloaded: " + strings.Join(summary, "; "))
	}
	r.smu.Lock()
	r.status = st
	r.smu.Unlock()
	if r.Observe != nil {
		r.Observe(st)
	}
	return summary, err
}

func (r *Reloader) logger() logrus.FieldLogger {
	if r.Log != nil {
		return r.Log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func (r *Reloader) reload(ctx context.Context) ([]string, error) {
	cfg, err := r.Load()
	if err != nil {
		return nil, err
	}
	opts := r.Build
	opts.Previous = r.tree
	next, err := Build(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	plans := r.plan(next)
	hostApply, hostAbort, err := r.Host.Prepare(cfg)
	if err != nil {
		return nil, abandon(next, nil, err)
	}
	// Take the commit lock of every mount the reload changes: no
	// transaction is between vote and finish on any of them while the
	// changes are applied.
	var locked []*Mount
	unlock := func() {
		for _, m := range locked {
			m.UnlockCommit()
		}
	}
	timeout := r.CommitTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	for _, p := range plans {
		if p.mount == nil || !p.touched() {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.mount.LockCommit(lctx)
		cancel()
		if err != nil {
			unlock()
			return nil, abandon(next, hostAbort, fmt.Errorf("storage %q: a commit is still in progress after %s: %w", p.name, timeout, err))
		}
		locked = append(locked, p.mount)
	}

	// From here on nothing fails.
	var summary []string
	var drained []<-chan struct{}
	var applied []Change
	for _, p := range plans {
		switch {
		case p.root == nil:
			r.Host.RemoveMount(p.name, "storage removed by a configuration reload")
			drained = append(drained, p.mount.Retire())
			delete(r.mounts, p.name)
			summary = append(summary, fmt.Sprintf("storage %s removed (its clients disconnected)", p.name))
			continue
		case p.mount == nil:
			m := NewMount(p.name, p.root.Storage)
			if err := r.Host.AddMount(m); err != nil {
				// Only when the server is shutting down.
				r.logger().WithError(err).WithField("storage", p.name).Error("reload: cannot serve the added storage")
				continue
			}
			r.mounts[p.name] = m
			summary = append(summary, fmt.Sprintf("storage %s added (<%s>)", p.name, p.root.Type))
			continue
		}
		for _, b := range p.changes {
			b.Change.Apply()
			applied = append(applied, b.Change)
			for _, line := range b.Change.Summary() {
				summary = append(summary, b.Path+": "+line)
			}
		}
		if p.swap {
			drained = append(drained, p.mount.SwapLocked(p.root.Storage, true).Drained)
			summary = append(summary, fmt.Sprintf("storage %s replaced by a new <%s>: the data behind it changed, its clients were disconnected to revalidate", p.name, p.root.Type))
		}
	}
	summary = append(summary, hostApply()...)
	unlock()

	old := r.tree
	r.tree = next
	r.retire.Add(1)
	go func() {
		defer r.retire.Done()
		for _, d := range drained {
			<-d
		}
		for _, ch := range applied {
			if err := ch.Release(context.Background()); err != nil {
				r.logger().WithError(err).Warn("reload: waiting for calls on a removed storage")
			}
		}
		if err := old.CloseUnused(next); err != nil {
			r.logger().WithError(err).Error("reload: closing storages no longer configured")
		}
	}()
	if len(summary) == 0 {
		summary = []string{"no change"}
	}
	return summary, nil
}

// abandon undoes a prepared reload and returns err.
func abandon(next *Tree, hostAbort func(), err error) error {
	if hostAbort != nil {
		hostAbort()
	}
	if derr := next.Discard(); derr != nil {
		err = errors.Join(err, derr)
	}
	return err
}

// plan compares the running mounts with the new tree.
func (r *Reloader) plan(next *Tree) []*mountPlan {
	var plans []*mountPlan
	for _, name := range next.Names {
		root := next.Roots[name]
		p := &mountPlan{name: name, mount: r.mounts[name], root: root}
		if p.mount != nil {
			p.swap = root.Reuse == Opened
			root.walk(func(b *Built) {
				if b.Reuse == Reconfigured {
					p.changes = append(p.changes, b)
				}
			})
			// Children's changes first: a parent's change may refer to
			// what its children became.
			sort.SliceStable(p.changes, func(i, j int) bool { return len(p.changes[i].Path) > len(p.changes[j].Path) })
		}
		plans = append(plans, p)
	}
	for name, m := range r.mounts {
		if _, ok := next.Roots[name]; !ok {
			plans = append(plans, &mountPlan{name: name, mount: m})
		}
	}
	return plans
}

// Settle waits until the storages retired by past reloads are closed
// (each once the calls still using it ended).
func (r *Reloader) Settle() { r.retire.Wait() }

// Close waits until the storages retired by past reloads are closed, then
// closes the running tree.
func (r *Reloader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retire.Wait()
	return r.tree.Close()
}
