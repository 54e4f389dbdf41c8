//go:build interop

package main

import (
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// `ctl status` answers for plain ZEO servers too: the real Python runzeo.
func TestCtlStatusOfPlainRunzeo(t *testing.T) {
	addr := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{}).Addr
	out, code := ctl(t, addr, "status")
	if code != 0 || !strings.Contains(out, "reachable (not a RAID)") || !strings.Contains(out, "last transaction 0x0000000000000000") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	out, code = ctl(t, addr, "details")
	if code != 3 || !strings.Contains(out, "does not offer raid_details") {
		t.Fatalf("details on a plain server: exit %d, output %q", code, out)
	}
}
