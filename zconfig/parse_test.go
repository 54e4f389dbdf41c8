package zconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseErrors parses src and returns the error text ("" when it parses).
func parseErrors(t *testing.T, filename, src string) string {
	t.Helper()
	_, err := Parse(filename, []byte(src))
	if err == nil {
		return ""
	}
	if _, ok := err.(ErrorList); !ok {
		t.Fatalf("error is %T, want ErrorList", err)
	}
	return err.Error()
}

func TestSubstitutionGrowthIsBounded(t *testing.T) {
	src := "%define a " + strings.Repeat("x", 1000) + "\n"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e"} {
		src += "%define " + name + " " + strings.Repeat("$"+prev, 8) + "\n"
		prev = name
	}
	got := parseErrors(t, "t.conf", src)
	if got != "t.conf:5:11: value is longer than 1048576 bytes after substitution" {
		t.Errorf("got %q", got)
	}
}

func TestIncludeRefusesNonRegularFiles(t *testing.T) {
	got := parseErrors(t, "t.conf", "%include /dev/null\n%include "+t.TempDir()+"\n")
	if !strings.Contains(got, "t.conf:1:10: cannot include '/dev/null': not a regular file") ||
		!strings.Contains(got, "t.conf:2:10: cannot include") {
		t.Errorf("got %q", got)
	}
}

func TestParseFileMissing(t *testing.T) {
	_, err := ParseFile("testdata/no-such.conf")
	if err == nil || err.Error() != "testdata/no-such.conf:1:1: cannot read configuration: no such file or directory" {
		t.Errorf("got %v", err)
	}
}

func TestErrorsOfFileIncludedTwiceReportedOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.conf"), []byte("k $undefined\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "main.conf")
	got := parseErrors(t, main, "<a>\n%include bad.conf\n</a>\n<b>\n%include bad.conf\n</b>\n")
	want := filepath.Join(dir, "bad.conf") + ":1:3: undefined name 'undefined' (no %define before this line)"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDefinesAreSharedWithIncludes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "defs.conf"), []byte("%define port 8100\nk $host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := Parse(filepath.Join(dir, "main.conf"), []byte("%define host zeo\n%include defs.conf\nport $port\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(root.Keys) != 2 || root.Keys[0].Value != "zeo" || root.Keys[1].Value != "8100" {
		t.Errorf("keys: %+v %+v", root.Keys[0], root.Keys[1])
	}
}

func TestPrintRefusesUnprintableTrees(t *testing.T) {
	for name, s := range map[string]*Section{
		"blank in key":    {Keys: []*Key{{Name: "a b"}}},
		"upper-case key":  {Keys: []*Key{{Name: "Key"}}},
		"newline value":   {Keys: []*Key{{Name: "k", Value: "a\nb"}}},
		"padded value":    {Keys: []*Key{{Name: "k", Value: " a"}}},
		"empty type":      {Sections: []*Section{{Type: ""}}},
		"name with slash": {Sections: []*Section{{Type: "a", Name: "b/"}}},
		"bad import":      {Imports: []*Import{{Package: "a-b"}}},
	} {
		var b strings.Builder
		if err := Print(&b, s); err == nil || b.Len() != 0 {
			t.Errorf("%s: printed %q (err %v)", name, b.String(), err)
		}
	}
}

func TestPrintSection(t *testing.T) {
	root := mustParse(t, "<a x>\n  k $$v\n  <b/>\n</a>\n")
	var b strings.Builder
	if err := Print(&b, root.Sections[0]); err != nil {
		t.Fatal(err)
	}
	if want := "<a x>\n  k $$v\n  <b/>\n</a>\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestErrorListFormat(t *testing.T) {
	l := ErrorList{{Pos: Pos{"b.conf", 1, 1}, Msg: "x"}, {Pos: Pos{"a.conf", 2, 3}, Msg: "y"}, {Pos: Pos{"a.conf", 2, 3}, Msg: "y"}}
	if got := l.err().Error(); got != "a.conf:2:3: y\nb.conf:1:1: x" {
		t.Errorf("got %q", got)
	}
	if (ErrorList{}).err() != nil {
		t.Error("empty list is an error")
	}
}
