// Command testplugin is the plugin the host's tests run as a real
// subprocess: <testmapping> (the in-memory mappingstorage, with hooks for
// the tests) and <testfile> (filestorage, persistent, with blobs).
package main

import (
	"context"
	"fmt"
	"os"

	_ "github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/plugins/sdk"
	"github.com/zeoraid/zeoraid/stack"
)

// Options are <testmapping>'s keys.
type Options struct {
	Name        string `zconfig:"name,default=test mapping" doc:"the storage's name"`
	BlockOid    *int64 `zconfig:"block-oid" doc:"loadBefore of this oid blocks until the call's context ends"`
	CloseMarker string `zconfig:"close-marker" doc:"file written when the storage is closed"`
	Count       []int  `zconfig:"count" doc:"a multikey, for the schema tests"`
}

// storage is a mappingstorage with the test hooks.
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

func (s *storage) Close() error {
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
