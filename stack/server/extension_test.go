package server_test

import (
	"context"
	"errors"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// managed is a storage with one extension call, like the RAID.
type managed struct{ *mappingstorage.Storage }

func (managed) Extensions() map[string]stack.Extension {
	return map[string]stack.Extension{
		"raid_status": func(ctx context.Context, args []any) (any, error) {
			if len(args) > 0 {
				return nil, &stack.StorageError{Msg: "raid_status takes no arguments"}
			}
			return "optimal", nil
		},
	}
}

// Extension calls are listed in get_info and answered on read-only
// registrations; unknown names still close the connection.
func TestExtensionCalls(t *testing.T) {
	st := managed{mappingstorage.New("m", nil)}
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{})
	l, err := server.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())
	ctx := ctx10(t)
	c, err := zeoproto.Dial(ctx, "tcp", l.Addr().String(), zeoproto.ClientOptions{})
	must(t, err)
	defer c.Close()
	_, err = c.Register(ctx, "1", true)
	must(t, err)
	info, err := c.Call(ctx, "get_info")
	must(t, err)
	ext, _ := info.(zeoproto.Dict).Get("extensionMethods")
	if _, ok := ext.(zeoproto.Dict).Get("raid_status"); !ok {
		t.Fatalf("extensionMethods = %v", ext)
	}
	r, err := c.Call(ctx, "raid_status")
	if err != nil || r != "optimal" {
		t.Fatalf("raid_status = %v, %v", r, err)
	}
	var se *stack.StorageError
	if _, err := c.Call(ctx, "raid_status", "x"); !errors.As(err, &se) {
		t.Fatalf("error from an extension: %v", err)
	}
	if _, err := c.Call(ctx, "raid_nonsense"); err == nil {
		t.Fatal("an unknown name must close the connection")
	}
	<-c.Done()
}
