package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildTestPlugin builds the host's test plugin as zeoraid-plugin-test in
// a fresh directory and returns the directory.
func buildTestPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "zeoraid-plugin-test"), "../../plugins/host/testdata/testplugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test plugin: %v\n%s", err, out)
	}
	return dir
}

// `%import test` loads zeoraid-plugin-test from $ZEORAID_PLUGIN_PATH:
// validate checks its sections like a builtin's, types documents them,
// plugins lists it.
func TestPluginCommands(t *testing.T) {
	dir := buildTestPlugin(t)
	t.Setenv("ZEORAID_PLUGIN_PATH", dir)
	conf := filepath.Join(t.TempDir(), "zeo.conf")
	if err := os.WriteFile(conf, []byte("%import test\n<zeo>\n  address 127.0.0.1:0\n</zeo>\n<testmapping main>\n  nmae m\n</testmapping>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-C", conf}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), conf+":6:3: unknown key 'nmae' in <testmapping>; did you mean 'name'?") {
		t.Errorf("validate: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"types"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "<testmapping>") || !strings.Contains(stdout.String(), "block-oid") {
		t.Errorf("types: exit %d\n%s", code, stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"plugins"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "test  "+filepath.Join(dir, "zeoraid-plugin-test")+"  protocol 2  <testmapping> <testfile>") {
		t.Errorf("plugins: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}
