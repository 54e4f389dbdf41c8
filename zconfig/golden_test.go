package zconfig

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// The test schema follows zeo.conf (docs/configuration.md): what the golden
// files decode into.
type testConfig struct {
	ZEO             *testZEO           `zconfig:"zeo,section,required"`
	Runner          *Section           `zconfig:"runner,section"`
	EventLog        *testEventLog      `zconfig:"eventlog,section"`
	FileStorages    []*testFileStorage `zconfig:"filestorage,section"`
	MappingStorages []*testMapping     `zconfig:"mappingstorage,section"`
	BlobStorages    []*testBlobStorage `zconfig:"blobstorage,section"`
	ZEOClients      []*testZEOClient   `zconfig:"zeoclient,section"`
	RaidStorages    []*testRaidStorage `zconfig:"raidstorage,section"`
}

type testZEO struct {
	Address                  BindAddress      `zconfig:"address,required" doc:"where to listen"`
	ReadOnly                 bool             `zconfig:"read-only,default=false"`
	InvalidationQueueSize    int              `zconfig:"invalidation-queue-size,default=100"`
	InvalidationAge          *float64         `zconfig:"invalidation-age"`
	TransactionTimeout       *time.Duration   `zconfig:"transaction-timeout"`
	PidFilename              *ExistingDirPath `zconfig:"pid-filename"`
	ClientConflictResolution bool             `zconfig:"client-conflict-resolution,default=false"`
	Msgpack                  *bool            `zconfig:"msgpack"`
	SSL                      *testSSL         `zconfig:"ssl,section"`
	// The original ZEORaid documentation put the storage inside <zeo>.
	RaidStorages []*testRaidStorage `zconfig:"raidstorage,section"`
}

type testSSL struct {
	Certificate      string `zconfig:"certificate,required"`
	Key              string `zconfig:"key"`
	PasswordFunction string `zconfig:"password-function"`
	Authenticate     string `zconfig:"authenticate,required"`
}

type testEventLog struct {
	Level    string         `zconfig:"level,default=info"`
	Logfiles []*testLogfile `zconfig:"logfile,section"`
	Handlers []*Section     `zconfig:"*"`
}

type testLogfile struct {
	Path     ExistingDirPath `zconfig:"path,required"`
	Format   string          `zconfig:"format,default=------\n%(asctime)s %(levelname)s %(name)s %(message)s"`
	Level    string          `zconfig:"level,default=notset"`
	MaxSize  *ByteSize       `zconfig:"max-size"`
	OldFiles int             `zconfig:"old-files,default=0"`
}

type testStorageName struct {
	SectionName string `zconfig:",name"`
}

type testFileStorage struct {
	testStorageName
	Path        string    `zconfig:"path,required"`
	BlobDir     string    `zconfig:"blob-dir"`
	Create      bool      `zconfig:"create,default=false"`
	ReadOnly    bool      `zconfig:"read-only,default=false"`
	Quota       *ByteSize `zconfig:"quota"`
	Packer      string    `zconfig:"packer"`
	PackGC      bool      `zconfig:"pack-gc,default=true"`
	PackKeepOld bool      `zconfig:"pack-keep-old,default=true"`
}

type testMapping struct {
	testStorageName
	Name string `zconfig:"name,default=Mapping Storage"`
}

type testBlobStorage struct {
	BlobDir     string           `zconfig:"blob-dir,required"`
	FileStorage *testFileStorage `zconfig:"filestorage,section"`
}

type testZEOClient struct {
	testStorageName
	Server    []ConnectAddress `zconfig:"server,required"`
	Storage   string           `zconfig:"storage,default=1"`
	CacheSize ByteSize         `zconfig:"cache-size,default=20MB"`
	Wait      bool             `zconfig:"wait,default=on"`
	ReadOnly  bool             `zconfig:"read-only,default=off"`
}

type testRaidStorage struct {
	testStorageName
	RecoverTimeout  time.Duration      `zconfig:"recover-timeout,default=1m"`
	ZEOClients      []*testZEOClient   `zconfig:"zeoclient,section"`
	FileStorages    []*testFileStorage `zconfig:"filestorage,section"`
	MappingStorages []*testMapping     `zconfig:"mappingstorage,section"`
	RaidStorages    []*testRaidStorage `zconfig:"raidstorage,section"`
}

// TestGolden parses every testdata/*.conf, prints it, reparses the print,
// decodes it into testConfig and compares the outcome with the .golden file
// next to it.
func TestGolden(t *testing.T) {
	t.Setenv("ZCONFIG_TEST_ROOT", "/srv/zeo")
	t.Setenv("ZCONFIG_TEST_PORT", "9100")
	files, err := filepath.Glob("testdata/*.conf")
	if err != nil {
		t.Fatal(err)
	}
	broken := 0
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".conf")
		t.Run(name, func(t *testing.T) {
			got, failed := goldenOutput(t, file)
			if failed {
				broken++
			}
			if strings.HasPrefix(name, "err-") != failed {
				t.Errorf("%s: files named err-* must fail and only they; output:\n%s", file, got)
			}
			golden := strings.TrimSuffix(file, ".conf") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./zconfig -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", file, golden, got, want)
			}
		})
	}
	if broken < 25 {
		t.Errorf("only %d broken inputs in testdata; want at least 25", broken)
	}
}

// positionedRE is what every error line must look like.
var positionedRE = regexp.MustCompile(`^testdata/[^:]+:[0-9]+:[0-9]+: \S`)

// goldenOutput renders the outcome of parsing and decoding file, and
// whether it failed. It also checks, independently of the golden files,
// that errors are positioned and that the printed form parses back to the
// same tree.
func goldenOutput(t *testing.T, file string) (string, bool) {
	t.Helper()
	root, err := ParseFile(file)
	if err != nil {
		checkErrorList(t, err)
		return "-- parse errors --\n" + err.Error() + "\n", true
	}
	var printed strings.Builder
	if err := Print(&printed, root); err != nil {
		t.Fatalf("Print: %v", err)
	}
	again, err := Parse(file, []byte(printed.String()))
	if err != nil {
		t.Fatalf("printed form does not parse: %v\n%s", err, printed.String())
	}
	if !sameTree(root, again) {
		t.Errorf("printed form parses to a different tree:\n%s", printed.String())
	}
	out := "-- print --\n" + printed.String() + "-- positions --\n" + dumpPositions(root, "")
	var cfg testConfig
	if err := Decode(root, &cfg); err != nil {
		checkErrorList(t, err)
		return out + "-- decode errors --\n" + err.Error() + "\n", true
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out + "-- decoded --\n" + string(js) + "\n", false
}

// checkErrorList asserts that err is an ErrorList of positioned messages
// sorted by position.
func checkErrorList(t *testing.T, err error) {
	t.Helper()
	list, ok := err.(ErrorList)
	if !ok || len(list) == 0 {
		t.Fatalf("error is %T %v, want a non-empty ErrorList", err, err)
	}
	for i, e := range list {
		if !positionedRE.MatchString(e.Error()) {
			t.Errorf("error without file:line:col: %q", e.Error())
		}
		if i > 0 && list[i-1].Pos.compare(e.Pos) > 0 {
			t.Errorf("errors not sorted: %v before %v", list[i-1].Pos, e.Pos)
		}
	}
}

// dumpPositions lists every node of s with its positions.
func dumpPositions(s *Section, indent string) string {
	var b strings.Builder
	what := "top level"
	if s.Type != "" {
		what = "<" + strings.TrimSpace(s.Type+" "+s.Name) + ">"
	}
	fmt.Fprintf(&b, "%s%s %s (end %s)\n", indent, s.Pos, what, s.End)
	for _, imp := range s.Imports {
		fmt.Fprintf(&b, "%s  %s %%import %s\n", indent, imp.Pos, imp.Package)
	}
	for _, k := range s.Keys {
		fmt.Fprintf(&b, "%s  %s %s = %q (value %s)\n", indent, k.Pos, k.Name, k.Value, k.ValuePos)
	}
	for _, sub := range s.Sections {
		b.WriteString(dumpPositions(sub, indent+"  "))
	}
	return b.String()
}

// sameTree compares two trees, ignoring positions.
func sameTree(a, b *Section) bool {
	return reflect.DeepEqual(stripPositions(a), stripPositions(b))
}

// stripPositions returns a copy of s with every position zeroed.
func stripPositions(s *Section) *Section {
	c := &Section{Type: s.Type, Name: s.Name}
	for _, k := range s.Keys {
		c.Keys = append(c.Keys, &Key{Name: k.Name, Value: k.Value})
	}
	for _, imp := range s.Imports {
		c.Imports = append(c.Imports, &Import{Package: imp.Package})
	}
	for _, sub := range s.Sections {
		c.Sections = append(c.Sections, stripPositions(sub))
	}
	return c
}
