// Package bench is zeoraid's load generator: it drives any ZEO 5/6 server
// (Python runzeo or zeoraid) over the wire protocol with N connections and
// measures loads of existing objects, small commits (one object) and large
// commits (100 objects): throughput and p50/p99 latency. `zeoraid bench`
// runs it against an address, or against runzeo and zeoraid serving the
// same kind of storage in one run, printing the ratio.
package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// Options describe a run.
type Options struct {
	Addr        string        // server address: host:port or a unix socket path
	Storage     string        // storage name, default "1"
	Conns       int           // concurrent connections, default 4
	Objects     int           // objects created before the load phase, default 1000
	ObjectSize  int           // bytes per object record, default 200
	Duration    time.Duration // per phase, default 5s
	LargeCommit int           // objects per large commit, default 100
	Pid         int           // the server process whose processor time each phase measures; 0: none
	Progress    io.Writer     // phase names and counts as they finish; nil: quiet
}

func (o *Options) defaults() {
	if o.Storage == "" {
		o.Storage = "1"
	}
	if o.Conns <= 0 {
		o.Conns = 4
	}
	if o.Objects <= 0 {
		o.Objects = 1000
	}
	if o.ObjectSize <= 0 {
		o.ObjectSize = 200
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.LargeCommit <= 0 {
		o.LargeCommit = 100
	}
}

// Phase is the measurement of one kind of operation.
type Phase struct {
	Name     string
	Ops      int
	Elapsed  time.Duration
	P50, P99 time.Duration
	Errors   int
	CPU      time.Duration // the server's processor time over the phase, when measured
}

// CPUPerOp is the server's processor time per operation (0 when not
// measured).
func (p Phase) CPUPerOp() time.Duration {
	if p.Ops == 0 {
		return 0
	}
	return p.CPU / time.Duration(p.Ops)
}

// PerSecond is the phase's throughput.
func (p Phase) PerSecond() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Ops) / p.Elapsed.Seconds()
}

// Result is every phase of a run.
type Result struct {
	Addr   string
	Phases []Phase
	Oids   []stack.Oid // the objects the setup created, which loads read
}

// Phase returns the named phase.
func (r Result) Phase(name string) Phase {
	for _, p := range r.Phases {
		if p.Name == name {
			return p
		}
	}
	return Phase{Name: name}
}

// The phases, in the order they run.
const (
	PhaseLoad   = "load"
	PhaseSmall  = "commit-1"
	PhaseLarge  = "commit-100"
	phaseSetup  = "setup"
	txnUser     = "zeoraid bench"
	benchPrefix = "bench"
)

// Run benchmarks the server at o.Addr.
func Run(ctx context.Context, o Options) (Result, error) {
	return run(ctx, o, []string{PhaseLoad, PhaseSmall, PhaseLarge})
}

// run runs the named phases (of PhaseLoad, PhaseSmall, PhaseLarge), in
// that order, after the setup; Result.Objects lists the objects created.
func run(ctx context.Context, o Options, names []string) (Result, error) {
	o.defaults()
	res := Result{Addr: o.Addr}
	clients := make([]*worker, o.Conns)
	for i := range clients {
		w, err := dial(ctx, o)
		if err != nil {
			for _, c := range clients[:i] {
				c.close()
			}
			return res, err
		}
		clients[i] = w
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	// Setup: create the objects the load phase reads, in commits of 100.
	objs, err := clients[0].populate(ctx, o.Objects, o.ObjectSize)
	if err != nil {
		return res, fmt.Errorf("setup: %w", err)
	}
	for _, ob := range objs {
		res.Oids = append(res.Oids, ob.oid)
	}
	progress(o, "setup: %d objects created", len(objs))

	// Each worker commits to objects of its own, so commits never
	// conflict and measure the server rather than conflict handling.
	for i, w := range clients {
		own, err := w.populate(ctx, o.LargeCommit, o.ObjectSize)
		if err != nil {
			return res, fmt.Errorf("setup of connection %d: %w", i, err)
		}
		w.own = own
	}

	phases := []struct {
		name string
		op   func(ctx context.Context, w *worker) error
	}{
		{PhaseLoad, func(ctx context.Context, w *worker) error {
			oid := objs[w.rng.IntN(len(objs))].oid
			_, err := w.c.LoadBefore(ctx, oid, stack.MaxTid)
			return err
		}},
		{PhaseSmall, func(ctx context.Context, w *worker) error {
			return w.commit(ctx, w.own[:1], o.ObjectSize)
		}},
		{PhaseLarge, func(ctx context.Context, w *worker) error {
			return w.commit(ctx, w.own, o.ObjectSize)
		}},
	}
	for _, ph := range phases {
		if !slices.Contains(names, ph.name) {
			continue
		}
		cpu := startCPU(o.Pid)
		p, err := runPhase(ctx, ph.name, clients, o.Duration, ph.op)
		if err != nil {
			return res, err
		}
		if p.CPU, err = cpu.stop(); err != nil {
			return res, err
		}
		res.Phases = append(res.Phases, p)
		progress(o, "%s: %d ops, %.0f/s, p50 %v, p99 %v", p.Name, p.Ops, p.PerSecond(), p.P50, p.P99)
	}
	return res, nil
}

func progress(o Options, format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "  "+format+"\n", args...)
	}
}

// runPhase runs op on every worker until d has passed.
func runPhase(ctx context.Context, name string, ws []*worker, d time.Duration, op func(context.Context, *worker) error) (Phase, error) {
	var (
		mu      sync.Mutex
		lat     []time.Duration
		errs    atomic.Int64
		first   error
		wg      sync.WaitGroup
		started = time.Now()
		stop    = started.Add(d)
	)
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(stop) && ctx.Err() == nil {
				t0 := time.Now()
				if err := op(ctx, w); err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						first = err
						mu.Unlock()
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	p := Phase{Name: name, Ops: len(lat), Elapsed: time.Since(started), Errors: int(errs.Load())}
	if p.Ops == 0 {
		if first != nil {
			return p, fmt.Errorf("%s: every operation failed: %w", name, first)
		}
		return p, fmt.Errorf("%s: no operation completed", name)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p.P50 = lat[len(lat)/2]
	p.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	return p, nil
}

// worker is one connection and the objects it owns.
type worker struct {
	c     *zeoproto.Client
	rng   *rand.Rand
	own   []object
	txnID int64
}

type object struct {
	oid    stack.Oid
	serial stack.Tid
}

func dial(ctx context.Context, o Options) (*worker, error) {
	network, address := zeoproto.SplitAddress(o.Addr)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := zeoproto.Dial(dctx, network, address, zeoproto.ClientOptions{})
	if err != nil {
		return nil, err
	}
	if _, err := c.Register(dctx, o.Storage, false); err != nil {
		c.Close()
		return nil, err
	}
	return &worker{c: c, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}, nil
}

func (w *worker) close() { w.c.Close() }

// record is an object record: a small valid pickle (a class reference and
// a state dict with one bytes value), padded to size.
func record(size int, rng *rand.Rand) []byte {
	head := []byte("\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02C")
	n := max(size-len(head)-4, 1)
	if n > 255 {
		n = 255
	}
	b := append(head, byte(n))
	for i := 0; i < n; i++ {
		b = append(b, byte('a'+rng.IntN(26)))
	}
	return append(b, "s."...)
}

// populate creates n new objects in commits of at most 100.
func (w *worker) populate(ctx context.Context, n, size int) ([]object, error) {
	var objs []object
	for len(objs) < n {
		oids, err := w.c.NewOIDs(ctx)
		if err != nil {
			return nil, err
		}
		batch := make([]object, 0, len(oids))
		for _, oid := range oids[:min(len(oids), n-len(objs))] {
			batch = append(batch, object{oid: oid})
		}
		if err := w.commit(ctx, batch, size); err != nil {
			return nil, err
		}
		objs = append(objs, batch...)
	}
	return objs, nil
}

// commit stores a new revision of every object in one transaction and
// records the new serials.
func (w *worker) commit(ctx context.Context, objs []object, size int) error {
	w.txnID++
	id := w.txnID
	if err := w.c.CallAsync(ctx, "tpc_begin", id, []byte(txnUser), []byte(benchPrefix), zeoproto.Dict{}, nil, " "); err != nil {
		return err
	}
	for _, ob := range objs {
		if err := w.c.CallAsync(ctx, "storea", ob.oid, ob.serial, record(size, w.rng), id); err != nil {
			return err
		}
	}
	r, err := w.c.Call(ctx, "vote", id)
	if err != nil {
		_, _ = w.c.Call(ctx, "tpc_abort", id)
		return err
	}
	if s, _ := zeoproto.Seq(r); len(s) > 0 {
		_, _ = w.c.Call(ctx, "tpc_abort", id)
		return fmt.Errorf("vote reported %d conflicts", len(s))
	}
	r, err = w.c.Call(ctx, "tpc_finish", id)
	if err != nil {
		return err
	}
	b, ok := r.([]byte)
	if !ok {
		return fmt.Errorf("tpc_finish returned %s", zeoproto.TypeName(r))
	}
	tid, err := stack.TidFromBytes(b)
	if err != nil {
		return err
	}
	for i := range objs {
		objs[i].serial = tid
	}
	return nil
}
