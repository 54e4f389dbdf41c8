package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestFSUsage(t *testing.T) {
	for _, args := range [][]string{{"fs"}, {"fs", "check"}, {"fs", "frob", "x"}, {"fs", "dump", "a", "b"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: zeoraid fs check") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"fs", "check", filepath.Join(t.TempDir(), "missing.fs")}, &stdout, &stderr); code != 1 {
		t.Errorf("fs check of a missing file: exit %d", code)
	}
}
