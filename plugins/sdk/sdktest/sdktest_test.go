package sdktest_test

import (
	"context"
	"testing"

	"github.com/zeoraid/zeoraid/plugins/sdk/sdktest"
	"github.com/zeoraid/zeoraid/stack"
)

// Build and Open bring a plugin's storage up as zeoraid would.
func TestBuildOpen(t *testing.T) {
	bin := sdktest.Build(t, "../../host/testdata/testplugin")
	s := sdktest.Open(t, bin, "<testmapping>\n  name under test\n</testmapping>\n")
	defer s.Close()
	info, err := s.Info(context.Background())
	if err != nil || info.Name != "under test" {
		t.Fatalf("info: %+v %v", info, err)
	}
	if !s.Capabilities().Undo || s.Capabilities().Blobs {
		t.Fatalf("capabilities: %+v", s.Capabilities())
	}
	if _, err := s.LoadBefore(context.Background(), 1, stack.MaxTid); err == nil {
		t.Fatal("loaded an oid never stored")
	}
}
