package eventlog

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// formatter pythonjsonlogger.jsonlogger.JsonFormatter writes one JSON
// object per line: the record fields the format names, then the entry's
// fields as keys of their own. validate warns about no other formatter.
func TestJSONFormatter(t *testing.T) {
	for _, class := range []string{"pythonjsonlogger.jsonlogger.JsonFormatter", "pythonjsonlogger.json.JsonFormatter"} {
		path := filepath.Join(t.TempDir(), "zeo.log")
		cfg := config(t, "<logfile>\n path "+path+"\n formatter "+class+"\n format %(asctime)s %(levelname)s %(name)s %(message)s %(process)d\n dateformat %Y\n</logfile>")
		for _, w := range cfg.Warnings {
			if strings.Contains(w, "formatter") {
				t.Errorf("%s warned about: %s", class, w)
			}
		}
		l, err := New(cfg.EventLog)
		if err != nil {
			t.Fatal(err)
		}
		l.WithField("node", "main/1").WithField("tid", "0x01").WithField("n", 3).WithError(errors.New("boom")).Warn("committed")
		l.WithField(LoggerField, "ZEO.StorageServer").Info(`a "quoted" line`)
		l.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s: %d lines: %q", class, len(lines), b)
		}
		var first, second map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
			t.Fatalf("%s: not JSON: %q: %v", class, lines[0], err)
		}
		if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
			t.Fatalf("%s: not JSON: %q: %v", class, lines[1], err)
		}
		want := map[string]any{"levelname": "WARNING", "name": "zeoraid.main/1", "message": "committed",
			"node": "main/1", "tid": "0x01", "n": float64(3), "error": "boom", "process": float64(os.Getpid())}
		for k, v := range want {
			if first[k] != v {
				t.Errorf("%s: %s = %#v, want %#v (line %s)", class, k, first[k], v, lines[0])
			}
		}
		if len(first["asctime"].(string)) != 4 {
			t.Errorf("asctime %v does not follow dateformat %%Y", first["asctime"])
		}
		if second["name"] != "ZEO.StorageServer" || second["message"] != `a "quoted" line` || second[LoggerField] != nil {
			t.Errorf("second line %s", lines[1])
		}
	}
}
