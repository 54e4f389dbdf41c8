package raidstorage_test

import (
	"context"
	"testing"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return l
}

// openRAID opens a RAID over n fresh mappingstorage children, closed
// (children too) at the end of the test.
func openRAID(t testing.TB, n int) *raidstorage.Storage {
	t.Helper()
	var names []string
	var children []stack.Storage
	for i := 1; i <= n; i++ {
		names = append(names, string(rune('0'+i)))
		children = append(children, mappingstorage.New("m", nil))
	}
	r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "main", Names: names, Children: children, Options: raidstorage.DefaultOptions(), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		for _, c := range children {
			c.Close()
		}
	})
	return r
}

func TestConformanceTwoChildren(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open:   func(t testing.TB) stack.Storage { return openRAID(t, 2) },
		Oracle: func(t testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) },
	})
}

func TestConformanceThreeChildren(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open:   func(t testing.TB) stack.Storage { return openRAID(t, 3) },
		Oracle: func(t testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) },
		Seed:   7,
	})
}
