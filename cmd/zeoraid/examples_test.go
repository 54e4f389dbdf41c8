package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples validates every configuration in examples/, so the
// documentation never shows a config zeoraid rejects.
func TestExamples(t *testing.T) {
	confs, err := filepath.Glob("../../examples/*.conf")
	if err != nil || len(confs) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, conf := range confs {
		var stdout, stderr bytes.Buffer
		args := []string{"validate", "-C", conf}
		if strings.HasPrefix(filepath.Base(conf), "copy") {
			args = []string{"copy", "--dry-run", conf} // source and destination, no <zeo>
		}
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit %d\n%s", conf, code, stderr.String())
		}
	}
}
