package raidstorage_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
)

func build(t *testing.T, conf string) (*stack.Tree, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zeo.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return stack.Build(context.Background(), cfg, stack.BuildOptions{Log: quietLog()})
}

func TestSection(t *testing.T) {
	tree, err := build(t, `%import gocept.zeoraid
<zeo>
  address 127.0.0.1:0
</zeo>
<raidstorage main>
  read-distribution first
  write-quorum 2
  call-timeout 5s
  <mappingstorage 1/>
  <mappingstorage 2/>
</raidstorage>
`)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	r, ok := tree.Roots["main"].Storage.(*raidstorage.Storage)
	if !ok {
		t.Fatalf("root is %T", tree.Roots["main"].Storage)
	}
	d := r.Details()
	if len(d) != 2 || d["1"] != "optimal" || d["2"] != "optimal" {
		t.Fatalf("details %v", d)
	}
	if _, ok := r.Extensions()["raid_status"]; !ok {
		t.Fatal("no management calls")
	}
}

func TestSectionErrors(t *testing.T) {
	for _, tc := range []struct{ keys, want string }{
		{"write-quorum 3", "write-quorum 3: want 1 to 2"},
		{"read-distribution nearest", `read-distribution "nearest"`},
		{"fail-mode explode", `fail-mode "explode"`},
	} {
		_, err := build(t, "<zeo>\n address 127.0.0.1:0\n</zeo>\n<raidstorage main>\n "+tc.keys+"\n <mappingstorage 1/>\n <mappingstorage 2/>\n</raidstorage>\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "zeo.conf:4:") {
			t.Errorf("%s: %v, want a positioned error with %q", tc.keys, err, tc.want)
		}
	}
}
