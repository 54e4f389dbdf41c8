package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// LoadOptions describe a phase of raw loads.
type LoadOptions struct {
	Addr    string
	Storage string
	Oids    []stack.Oid // loaded at random; nil: oid 0
	Conns   int         // connections
	Depth   int         // requests outstanding per connection (dialRaw: 0 for a connection that only registers)
	Pid     int         // the server process whose processor time is measured; 0: none
	// Pace is a pause after every burst: a client that thinks between
	// requests, as a real one does, so that the server goes idle and
	// is woken for each request.
	Pace time.Duration
}

// RawLoads drives loadBefore(oid, maxtid) over plain sockets for d: every
// connection writes Depth requests, encoded ahead, in one write and then
// reads Depth replies, without decoding them (the first reply of each
// connection is checked). The generator thus costs little beside the
// server, and a server that answers anything framed (EchoServer) can be
// measured the same way. With Depth 1 the latencies are those of single
// requests; else of whole bursts.
func RawLoads(ctx context.Context, o LoadOptions, name string, d time.Duration) (Phase, error) {
	if o.Conns <= 0 {
		o.Conns = 1
	}
	if o.Depth <= 0 {
		o.Depth = 1
	}
	if o.Storage == "" {
		o.Storage = "1"
	}
	conns := make([]*rawClient, o.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.nc.Close()
			}
		}
	}()
	for i := range conns {
		c, err := dialRaw(ctx, o)
		if err != nil {
			return Phase{Name: name}, err
		}
		conns[i] = c
	}
	var (
		mu    sync.Mutex
		lat   []time.Duration
		first error
		wg    sync.WaitGroup
	)
	cpu := startCPU(o.Pid)
	started := time.Now()
	stop := started.Add(d)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine, err := c.run(ctx, stop)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	p := Phase{Name: name, Elapsed: time.Since(started), Ops: len(lat) * o.Depth}
	var err error
	if p.CPU, err = cpu.stop(); err != nil {
		return p, err
	}
	if first != nil {
		return p, fmt.Errorf("%s: %w", name, first)
	}
	if len(lat) == 0 {
		return p, fmt.Errorf("%s: no request completed", name)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p.P50 = lat[len(lat)/2]
	p.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	return p, nil
}

// rawClient is one handshaken, registered connection with its bursts of
// requests encoded ahead.
type rawClient struct {
	nc     net.Conn
	fr     *zeoproto.FrameReader
	codec  zeoproto.Codec
	depth  int
	pace   time.Duration
	bursts [][]byte
}

// rawBursts is how many different bursts (of random oids) a connection
// cycles through.
const rawBursts = 64

func dialRaw(ctx context.Context, o LoadOptions) (*rawClient, error) {
	network, address := zeoproto.SplitAddress(o.Addr)
	var dl net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, err := dl.DialContext(dctx, network, address)
	if err != nil {
		return nil, err
	}
	fr, fw := zeoproto.NewFrameReader(nc, 0), zeoproto.NewFrameWriter(nc)
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	codec, err := zeoproto.ClientHandshake(fr, fw)
	if err == nil {
		err = rawCall(fr, fw, codec, zeoproto.NewCall(1, "register", o.Storage, true))
	}
	_ = nc.SetDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := &rawClient{nc: nc, fr: fr, codec: codec, depth: o.Depth, pace: o.Pace}
	if o.Depth <= 0 { // an idle connection
		return c, nil
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for range rawBursts {
		var b []byte
		for i := range o.Depth {
			var oid stack.Oid
			if len(o.Oids) > 0 {
				oid = o.Oids[rng.IntN(len(o.Oids))]
			}
			if b, err = zeoproto.AppendMessageFrame(codec, b, zeoproto.NewCall(int64(2+i), "loadBefore", oid, stack.MaxTid)); err != nil {
				nc.Close()
				return nil, err
			}
		}
		c.bursts = append(c.bursts, b)
	}
	// The first load is decoded: it must be an answer, not an error.
	var oid stack.Oid
	if len(o.Oids) > 0 {
		oid = o.Oids[0]
	}
	if err := rawCall(fr, fw, codec, zeoproto.NewCall(2, "loadBefore", oid, stack.MaxTid)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("loadBefore: %w", err)
	}
	return c, nil
}

// rawCall makes one call and decodes its reply, returning an error reply
// as an error.
func rawCall(fr *zeoproto.FrameReader, fw *zeoproto.FrameWriter, codec zeoproto.Codec, m zeoproto.Message) error {
	p, err := codec.Encode(m)
	if err != nil {
		return err
	}
	if err := fw.WriteFrame(p); err != nil {
		return err
	}
	p, err = fr.ReadFrame()
	if err != nil {
		return err
	}
	r, err := codec.Decode(p)
	if err != nil {
		return err
	}
	if r.IsError() {
		return fmt.Errorf("%s: the server answered %v", m.Name, r.Args)
	}
	return nil
}

// run sends bursts until stop and returns the time each took.
func (c *rawClient) run(ctx context.Context, stop time.Time) ([]time.Duration, error) {
	var lat []time.Duration
	for i := 0; ctx.Err() == nil; i++ {
		t0 := time.Now()
		if !t0.Before(stop) {
			break
		}
		if _, err := c.nc.Write(c.bursts[i%len(c.bursts)]); err != nil {
			return lat, err
		}
		for range c.depth {
			if _, err := c.fr.Next(); err != nil {
				return lat, err
			}
		}
		lat = append(lat, time.Since(t0))
		if c.pace > 0 {
			time.Sleep(c.pace)
		}
	}
	return lat, ctx.Err()
}
