package zconfig

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustParse parses src or fails the test.
func mustParse(t *testing.T, src string) *Section {
	t.Helper()
	s, err := Parse("t.conf", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return s
}

// decodeErrors decodes src into v and returns the error messages.
func decodeErrors(t *testing.T, src string, v any) []string {
	t.Helper()
	err := Decode(mustParse(t, src), v)
	if err == nil {
		return nil
	}
	list, ok := err.(ErrorList)
	if !ok {
		t.Fatalf("Decode error is %T %v, want ErrorList", err, err)
	}
	var msgs []string
	for _, e := range list {
		msgs = append(msgs, e.Error())
	}
	return msgs
}

type scalars struct {
	S   string          `zconfig:"s"`
	B   bool            `zconfig:"b"`
	I   int             `zconfig:"i"`
	I64 int64           `zconfig:"i64"`
	F   float64         `zconfig:"f"`
	D   time.Duration   `zconfig:"d"`
	BS  ByteSize        `zconfig:"bs"`
	P   ExistingDirPath `zconfig:"p"`
	BA  BindAddress     `zconfig:"ba"`
	CA  ConnectAddress  `zconfig:"ca"`
}

func TestDecodeDatatypes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		key, value string
		want       any // the field's value after decoding
	}{
		{"s", "Keeps Case  inside", "Keeps Case  inside"},
		{"b", "yes", true}, {"b", "ON", true}, {"b", "True", true}, {"b", "true", true},
		{"b", "no", false}, {"b", "Off", false}, {"b", "FALSE", false},
		{"i", "-42", -42}, {"i", "+7", 7},
		{"i64", "9223372036854775807", int64(9223372036854775807)},
		{"f", "3.5", 3.5}, {"f", "-1e3", -1000.0}, {"f", "7", 7.0},
		{"d", "90", 90 * time.Second}, {"d", "5m", 5 * time.Minute}, {"d", "2H", 2 * time.Hour},
		{"d", "1d", 24 * time.Hour}, {"d", "0s", time.Duration(0)}, {"d", "10S", 10 * time.Second},
		{"bs", "512", ByteSize(512)}, {"bs", "1kb", ByteSize(1024)}, {"bs", "20MB", ByteSize(20971520)},
		{"bs", "2Gb", ByteSize(2 << 30)},
		// ZConfig reads the number with Python's int(): blanks, signs and
		// "_" between digits are allowed, and so are negative values.
		{"bs", "10 MB", ByteSize(10 << 20)}, {"bs", "-1", ByteSize(-1)}, {"bs", "1_024", ByteSize(1024)},
		{"d", "-5s", -5 * time.Second}, {"d", "5 m", 5 * time.Minute},
		{"i", " 12", 12}, {"i", "1_000", 1000},
		{"ba", "127.0.0.1: 8100", BindAddress{Network: "tcp", Host: "127.0.0.1", Port: 8100}},
		{"ba", "65536", BindAddress{Network: "tcp", Host: "65536"}}, // not a port, so a host, as in ZConfig
		{"p", "Data.fs", ExistingDirPath("Data.fs")},
		{"p", filepath.Join(dir, "Data.fs"), ExistingDirPath(filepath.Join(dir, "Data.fs"))},
		{"ba", "8100", BindAddress{Network: "tcp", Host: "", Port: 8100}},
		{"ba", "LocalHost:8100", BindAddress{Network: "tcp", Host: "localhost", Port: 8100}},
		{"ba", "[::1]:8100", BindAddress{Network: "tcp", Host: "::1", Port: 8100}},
		{"ba", "example.com", BindAddress{Network: "tcp", Host: "example.com", Port: 0}},
		{"ba", "::", BindAddress{Network: "tcp", Host: "::", Port: 0}},
		{"ba", "/run/zeo.sock", BindAddress{Network: "unix", Path: "/run/zeo.sock"}},
		{"ca", "8100", ConnectAddress{Network: "tcp", Host: "127.0.0.1", Port: 8100}},
		{"ca", ":8100", ConnectAddress{Network: "tcp", Host: "127.0.0.1", Port: 8100}},
		{"ca", "Zeo.Example:8101", ConnectAddress{Network: "tcp", Host: "zeo.example", Port: 8101}},
		{"ca", "[FE80::1]:8102", ConnectAddress{Network: "tcp", Host: "fe80::1", Port: 8102}},
		{"ca", "var/zeo.sock", ConnectAddress{Network: "unix", Path: "var/zeo.sock"}},
	} {
		var v scalars
		if msgs := decodeErrors(t, tc.key+" "+tc.value+"\n", &v); msgs != nil {
			t.Errorf("%s %s: %v", tc.key, tc.value, msgs)
			continue
		}
		field := reflect.ValueOf(v).FieldByNameFunc(func(n string) bool {
			f, _ := reflect.TypeOf(v).FieldByName(n)
			return f.Tag.Get("zconfig") == tc.key
		})
		if got := field.Interface(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %s: got %#v, want %#v", tc.key, tc.value, got, tc.want)
		}
	}
}

func TestDecodeDatatypeErrors(t *testing.T) {
	for _, tc := range []struct{ key, value, want string }{
		{"b", "maybe", "t.conf:1:3: invalid value for 'b': 'maybe' is not a boolean (use yes/on/true or no/off/false)"},
		{"b", "1", "'1' is not a boolean"},
		{"i", "1.5", "'1.5' is not an integer"},
		{"i", "99999999999999999999", "'99999999999999999999' is out of range"},
		{"i", "", "'' is not an integer"},
		{"f", "fast", "'fast' is not a number"},
		{"d", "1w", "'1w' is not a time interval"},
		{"d", "1.5h", "'1.5h' is not a time interval"},
		{"d", "s", "'s' is not a time interval"},
		{"d", "9999999999999d", "time interval '9999999999999d' is too large"},
		{"bs", "1.5GB", "'1.5GB' is not a byte size"},
		{"bs", "5TB", "'5TB' is not a byte size"},
		{"bs", "10XB", "'10XB' is not a byte size"},
		{"bs", "99999999999GB", "byte size '99999999999GB' is too large"},
		{"p", "/nonexistent-zconfig-dir/x", "the directory '/nonexistent-zconfig-dir' of path '/nonexistent-zconfig-dir/x' does not exist"},
		{"p", "decode_test.go/x", "the directory 'decode_test.go' of path 'decode_test.go/x' does not exist"},
		{"ba", "host:port", "bad port in address 'host:port': 'port' is not a port number"},
		{"ba", "1.2.3.4:65536", "'65536' is not in 0..65535"},
		{"ba", "[::1]x:80", "'[::1]x:80' is not a valid host name"},
		{"ca", "localhost", "address 'localhost' has no port"},
		{"ca", "::1", "address '::1' has no port"},
		{"ca", "a b:80", "'a b' is not a valid host name"},
		{"ca", "65536", "address '65536' has no port: '65536' is not in 0..65535"},
	} {
		var v scalars
		msgs := decodeErrors(t, tc.key+" "+tc.value+"\n", &v)
		if len(msgs) != 1 || !strings.Contains(msgs[0], tc.want) || !strings.HasPrefix(msgs[0], "t.conf:1:") {
			t.Errorf("%s %q: got %q, want one positioned error containing %q", tc.key, tc.value, msgs, tc.want)
		}
	}
}

func TestAddressString(t *testing.T) {
	for _, tc := range []struct {
		s    interface{ String() string }
		want string
	}{
		{BindAddress{Network: "tcp", Port: 8100}, ":8100"},
		{BindAddress{Network: "tcp", Host: "::1", Port: 8100}, "[::1]:8100"},
		{ConnectAddress{Network: "tcp", Host: "127.0.0.1", Port: 8100}, "127.0.0.1:8100"},
		{ConnectAddress{Network: "unix", Path: "/run/zeo.sock"}, "/run/zeo.sock"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestExistingDirPathExpandsHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	var v scalars
	if msgs := decodeErrors(t, "p ~/Data.fs\n", &v); msgs != nil {
		t.Fatal(msgs)
	}
	if want := ExistingDirPath(home + "/Data.fs"); v.P != want {
		t.Errorf("got %q, want %q", v.P, want)
	}
}

type options struct {
	Name     string           `zconfig:",name"`
	Path     string           `zconfig:"path,required" doc:"the data file"`
	Servers  []ConnectAddress `zconfig:"server"`
	Tags     []string         `zconfig:"tag,default=none"`
	Size     ByteSize         `zconfig:"cache-size,default=20MB"`
	Format   string           `zconfig:"format,default=a,b,c"`
	Age      *float64         `zconfig:"age"`
	Wait     *bool            `zconfig:"wait,default=on"`
	Untagged int
	Ignored  string `zconfig:"-"`
	common
	SSL      *sslOptions `zconfig:"ssl,section"`
	Children []*options  `zconfig:"child,section"`
	Raw      *Section    `zconfig:"raw,section"`
}

type common struct {
	ReadOnly bool `zconfig:"read-only,default=false"`
}

type sslOptions struct {
	Certificate string `zconfig:"certificate,required"`
}

func TestDecodeStructure(t *testing.T) {
	src := `
<opts Main>
  path Data.fs
  server 8100
  server other:8101
  read-only yes
  <ssl>
    certificate c.pem
  </ssl>
  <child one>
    path 1.fs
  </child>
  <child two>
    path 2.fs
    tag x
    tag y
    <child deep>
      path 3.fs
    </child>
  </child>
  <raw>
    anything goes
  </raw>
</opts>
`
	var v options
	v.Untagged, v.Ignored = 7, "kept"
	if err := Decode(mustParse(t, src).Sections[0], &v); err != nil {
		t.Fatal(err)
	}
	if v.Name != "main" || v.Path != "Data.fs" || !v.ReadOnly || v.Size != 20<<20 || v.Format != "a,b,c" {
		t.Errorf("scalars/defaults: %+v", v)
	}
	if v.Age != nil || v.Wait == nil || !*v.Wait {
		t.Errorf("pointers: age %v wait %v", v.Age, v.Wait)
	}
	if len(v.Servers) != 2 || v.Servers[1].String() != "other:8101" {
		t.Errorf("multikey: %v", v.Servers)
	}
	if !reflect.DeepEqual(v.Tags, []string{"none"}) {
		t.Errorf("multikey default: %q", v.Tags)
	}
	if v.Untagged != 7 || v.Ignored != "kept" {
		t.Errorf("untagged fields changed: %d %q", v.Untagged, v.Ignored)
	}
	if v.SSL == nil || v.SSL.Certificate != "c.pem" {
		t.Errorf("ssl: %+v", v.SSL)
	}
	if len(v.Children) != 2 || v.Children[1].Name != "two" || !reflect.DeepEqual(v.Children[1].Tags, []string{"x", "y"}) ||
		len(v.Children[1].Children) != 1 || v.Children[1].Children[0].Path != "3.fs" {
		t.Errorf("children: %+v", v.Children)
	}
	if v.Raw == nil || len(v.Raw.Keys) != 1 || v.Raw.Keys[0].Value != "goes" {
		t.Errorf("raw section: %+v", v.Raw)
	}
}

func TestDecodeErrors(t *testing.T) {
	src := `<opts>
  pth Data.fs
  cache-size 1
  cache-size 2
  server localhost
  <ssl/>
  <ssl>
    certificate c.pem
  </ssl>
  <chlid/>
  <unrelated-thing/>
</opts>
`
	var v options
	got := decodeErrors(t, "<x>\n</x>\n"+src, &struct {
		Opts *options `zconfig:"opts,section"`
		X    *Section `zconfig:"x,section,required"`
		Y    *Section `zconfig:"y,section,required"`
	}{})
	want := []string{
		"t.conf:1:1: missing required section <y> in top level",
		"t.conf:3:1: missing required key 'path' in <opts>",
		"t.conf:4:3: unknown key 'pth' in <opts>; did you mean 'path'?",
		"t.conf:6:3: key 'cache-size' is given more than once in <opts> (first at 5:3); only multikeys may repeat",
		"t.conf:7:10: invalid value for 'server': address 'localhost' has no port",
		"t.conf:8:3: missing required key 'certificate' in <ssl>",
		"t.conf:9:3: only one <ssl> section is allowed in <opts> (first at 8:3)",
		"t.conf:12:3: unknown section <chlid> in <opts>; did you mean <child>?",
		"t.conf:13:3: unknown section <unrelated-thing> in <opts>",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	_ = v
}

func TestDecodeCatchAll(t *testing.T) {
	var v struct {
		Level  string     `zconfig:"level"`
		Files  []*Section `zconfig:"logfile,section"`
		Others []*Section `zconfig:"*"`
	}
	src := "level info\n<logfile/>\n<syslog a/>\n<email-notifier/>\n"
	if err := Decode(mustParse(t, src), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Files) != 1 || len(v.Others) != 2 || v.Others[0].Name != "a" || v.Others[1].Type != "email-notifier" {
		t.Errorf("files %v others %v", v.Files, v.Others)
	}
}

func TestDecodeProgrammingErrors(t *testing.T) {
	s := mustParse(t, "")
	for name, v := range map[string]any{
		"not a pointer":  struct{}{},
		"nil pointer":    (*options)(nil),
		"pointer to int": new(int),
		"unsupported type": &struct {
			C complex128 `zconfig:"c"`
		}{},
		"bad default": &struct {
			B bool `zconfig:"b,default=maybe"`
		}{},
		"required+default": &struct {
			B bool `zconfig:"b,required,default=yes"`
		}{},
		"upper-case name": &struct {
			B bool `zconfig:"Bee"`
		}{},
		"unknown option": &struct {
			B bool `zconfig:"b,multi"`
		}{},
		"bound twice": &struct {
			A, B bool `zconfig:"b"`
		}{},
		"bad section type": &struct {
			S string `zconfig:"s,section"`
		}{},
		"bad catch-all": &struct {
			S []string `zconfig:"*"`
		}{},
		"bad name field": &struct {
			N int `zconfig:",name"`
		}{},
		"no key name": &struct {
			N int `zconfig:",required"`
		}{},
		"unexported tagged": &struct {
			n int `zconfig:"n"`
		}{},
		"bad nested section": &struct {
			S *struct {
				C chan int `zconfig:"c"`
			} `zconfig:"s,section"`
		}{},
	} {
		err := Decode(s, v)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		var list ErrorList
		if errors.As(err, &list) || !strings.HasPrefix(err.Error(), "zconfig: ") {
			t.Errorf("%s: got %T %q, want a plain zconfig: error", name, err, err)
		}
	}
}

type raid struct {
	Name     string  `zconfig:",name"`
	Children []*raid `zconfig:"raidstorage,section" doc:"nested mirrors"`
}

func TestDecodeRecursiveType(t *testing.T) {
	var v struct {
		R []*raid `zconfig:"raidstorage,section"`
	}
	src := "<raidstorage a>\n<raidstorage b>\n<raidstorage c/>\n</raidstorage>\n</raidstorage>\n"
	if err := Decode(mustParse(t, src), &v); err != nil {
		t.Fatal(err)
	}
	if v.R[0].Children[0].Children[0].Name != "c" {
		t.Errorf("got %+v", v.R[0])
	}
	docs := Describe(raid{})
	if len(docs) != 1 || docs[0].Name != "raidstorage" || !docs[0].Section || !docs[0].Multi {
		t.Errorf("Describe of a recursive type: %+v", docs)
	}
}

func TestDescribe(t *testing.T) {
	got := Describe(&options{})
	byName := map[string]KeyDoc{}
	var names []string
	for _, d := range got {
		byName[d.Name] = d
		names = append(names, d.Name)
	}
	// child is of the described type itself: listed, not expanded again.
	wantNames := "path server tag cache-size format age wait read-only ssl ssl/certificate child raw"
	if strings.Join(names, " ") != wantNames {
		t.Errorf("names:\n%s\nwant\n%s", strings.Join(names, " "), wantNames)
	}
	if d := byName["path"]; d.Type != "string" || !d.Required || d.Doc != "the data file" || d.Section {
		t.Errorf("path: %+v", d)
	}
	if d := byName["server"]; d.Type != "socket-connection-address" || !d.Multi {
		t.Errorf("server: %+v", d)
	}
	if d := byName["cache-size"]; d.Type != "byte-size" || d.Default != "20MB" {
		t.Errorf("cache-size: %+v", d)
	}
	if d := byName["wait"]; d.Type != "boolean" || d.Default != "on" {
		t.Errorf("wait: %+v", d)
	}
	if d := byName["ssl"]; d.Type != "section" || !d.Section || d.Multi {
		t.Errorf("ssl: %+v", d)
	}
	if d := byName["ssl/certificate"]; !d.Required {
		t.Errorf("ssl/certificate: %+v", d)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Describe of a non-struct did not panic")
			}
		}()
		Describe(3)
	}()
}

func TestSuggest(t *testing.T) {
	keys := []string{"path", "blob-dir", "read-only", "quota", "pack-gc"}
	for name, want := range map[string]string{
		"pth": "path", "paht": "path", "blobdir": "blob-dir", "readonly": "read-only",
		"read_only": "read-only", "quote": "quota", "packgc": "pack-gc", "zzz": "", "storage": "",
		"path": "",
	} {
		if got := Suggest(name, keys); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestDependencyRule(t *testing.T) {
	// zconfig imports nothing of ours (docs/architecture.md §2.2): check the non-test files.
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(src), `"github.com/zeoraid/zeoraid/`) {
			t.Errorf("%s imports a zeoraid package", f)
		}
	}
}
