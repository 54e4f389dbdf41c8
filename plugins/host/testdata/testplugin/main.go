// Command testplugin is the plugin the host's tests run as a real
// subprocess: <testmapping> (the in-memory mappingstorage, with hooks for
// the tests) and <testfile> (filestorage, persistent, with blobs).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"

	_ "github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/plugins/sdk"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// Options are <testmapping>'s keys.
type Options struct {
	Name        string `zconfig:"name,default=test mapping" doc:"the storage's name"`
	BlockOid    *int64 `zconfig:"block-oid" doc:"loadBefore of this oid blocks until the call's context ends"`
	CloseMarker string `zconfig:"close-marker" doc:"file written when the storage is closed"`
	Count       []int  `zconfig:"count" doc:"a multikey, for the schema tests"`
	Eager       bool   `zconfig:"eager-conflicts" doc:"stores report write conflicts at once, not at the vote"`
}

// Validate is the options' own check, which the plugin runs (for a dry
// run of the host, too).
func (o *Options) Validate(int) error {
	if o.CloseMarker != "" && !filepath.IsAbs(o.CloseMarker) {
		return fmt.Errorf("close-marker %q is not an absolute path", o.CloseMarker)
	}
	return nil
}

// storage is a mappingstorage (whose Empty is promoted) with the test
// hooks and an extension call.
type storage struct {
	*mappingstorage.Storage
	opts *Options
}

func (s *storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (stack.Revision, error) {
	if s.opts.BlockOid != nil && stack.Oid(*s.opts.BlockOid) == oid {
		<-ctx.Done()
		return stack.Revision{}, ctx.Err()
	}
	return s.Storage.LoadBefore(ctx, oid, before)
}

// Begin gives a transaction that reports conflicts at Store with
// eager-conflicts.
func (s *storage) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	t, err := s.Storage.Begin(ctx, meta)
	if err != nil || !s.opts.Eager {
		return t, err
	}
	return &eagerTxn{Txn: t, s: s}, nil
}

// eagerTxn reports a write conflict at Store, which then has no effect,
// as the contract allows.
type eagerTxn struct {
	stack.Txn
	s *storage
}

func (t *eagerTxn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) error {
	rev, err := t.s.Storage.LoadBefore(ctx, oid, stack.MaxTid)
	if err == nil && rev.Serial != serial {
		return &stack.ConflictError{Oid: oid, Committed: rev.Serial, Read: serial, Data: data}
	}
	return t.Txn.Store(ctx, oid, serial, data)
}

// Extensions offers echo, which returns its arguments as a tuple, and
// fail, which fails with a conflict.
func (s *storage) Extensions() map[string]stack.Extension {
	return map[string]stack.Extension{
		"echo": func(_ context.Context, args []any) (any, error) { return zeoproto.Tuple(args), nil },
		"fail": func(context.Context, []any) (any, error) {
			return nil, &stack.ConflictError{Oid: 7, Committed: 2, Read: 1, Data: []byte("theirs")}
		},
	}
}

// ReadOnlyExtensions says echo only reads.
func (s *storage) ReadOnlyExtensions() []string { return []string{"echo"} }

func (s *storage) Close() error {
	pprof.StopCPUProfile()
	err := s.Storage.Close()
	if s.opts.CloseMarker != "" {
		if werr := os.WriteFile(s.opts.CloseMarker, []byte("closed\n"), 0o644); werr != nil {
			return werr
		}
	}
	return err
}

func main() {
	if os.Getenv("TESTPLUGIN_NOISE") != "" {
		// Things a careless plugin does: print before the handshake, and
		// write lines that look like go-plugin's JSON but are not.
		fmt.Println("noise on stdout before the handshake")
		fmt.Fprintln(os.Stderr, `{"@level":1}`)
		fmt.Fprintln(os.Stderr, `{"@message":5,"@timestamp":"yesterday","@level":["x"]}`)
		fmt.Fprintln(os.Stderr, `{"level":"warning","msg":"a warning from the plugin","k":"v"}`)
		fmt.Fprintln(os.Stderr, `[1,2,3]`)
		fmt.Fprintln(os.Stderr, "plain text on stderr")
	}
	if path := os.Getenv("TESTPLUGIN_CPUPROFILE"); path != "" {
		// The benchmarks' view of the plugin's side, until the storage
		// closes.
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	file, _ := stack.Lookup("filestorage")
	testfile := *file
	testfile.Type, testfile.Aliases = "testfile", nil
	sdk.Serve(stack.Module{
		Type:    "testmapping",
		Doc:     "An in-memory storage with test hooks.",
		Options: &Options{},
		Open: func(ctx context.Context, n *stack.Node, opts any) (stack.Storage, error) {
			o := opts.(*Options)
			mapping, _ := stack.Lookup("mappingstorage")
			m, err := mapping.Open(ctx, n, &mappingstorage.Options{Name: o.Name})
			if err != nil {
				return nil, err
			}
			return &storage{Storage: m.(*mappingstorage.Storage), opts: o}, nil
		},
	}, testfile)
}
