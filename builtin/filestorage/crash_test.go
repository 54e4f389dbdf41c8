package filestorage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// crashChildEnv names the Data.fs a re-executed test binary commits to
// in a loop until it is killed (TestCrashSafety).
const crashChildEnv = "ZEORAID_FS_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	if path := os.Getenv(openChildEnv); path != "" {
		os.Exit(openChild(path))
	}
	if path := os.Getenv(packChildEnv); path != "" {
		os.Exit(packChild(path))
	}
	os.Exit(m.Run())
}

// crashData is the record the child writes for the n-th store.
func crashData(oid stack.Oid, n, size int) []byte {
	return append([]byte(fmt.Sprintf("oid %d store %d ", oid, n)), bytes.Repeat([]byte{'x'}, size)...)
}

// crashChild opens the Data.fs (recovering whatever the last kill left)
// and commits forever: one to three stores of varied size per
// transaction, to old and new oids. Only after Finish returns does it
// print "tid oid n size" (tid as a decimal number) for each store, so every printed line is an
// acknowledged commit.
func crashChild(path string) int {
	ctx := context.Background()
	s, err := Open(path, Options{}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 3
	}
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	for n := 0; ; n++ {
		tx, err := s.Begin(ctx, stack.TxnMeta{Description: []byte(fmt.Sprintf("crash %d", n))})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child begin:", err)
			return 3
		}
		type store struct {
			oid  stack.Oid
			size int
		}
		var stores []store
		for k := rng.IntN(3); k >= 0; k-- {
			oid := stack.Oid(rng.IntN(40))
			if k == 0 && rng.IntN(4) == 0 {
				oids, _ := s.NewOIDs(ctx, 1)
				oid = oids[0]
			}
			if len(stores) > 0 && stores[len(stores)-1].oid == oid {
				continue
			}
			var serial stack.Tid
			if h, err := s.History(ctx, oid, 1); err == nil {
				serial = h[0].Tid
			}
			size := rng.IntN(3000)
			if err := tx.Store(ctx, oid, serial, crashData(oid, n, size)); err != nil {
				fmt.Fprintln(os.Stderr, "child store:", err)
				return 3
			}
			stores = append(stores, store{oid, size})
		}
		if _, err := tx.Vote(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "child vote:", err)
			return 3
		}
		tid, err := tx.Finish(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child finish:", err)
			return 3
		}
		for _, st := range stores {
			fmt.Fprintf(out, "%d %d %d %d\n", uint64(tid), st.oid, n, st.size)
		}
		out.Flush()
	}
}
