//go:build interop

package interop

import "testing"

// TestExpectedFailureLookup checks how a test id finds its line of
// expected_failures.txt: itself before its class, the encoding's entry
// before the one for both, and only among the entries of its client.
func TestExpectedFailureLookup(t *testing.T) {
	efs := map[string]expectedFailure{
		key("", "", "m.C.*"):         {id: "m.C.*", line: 1},
		key("", M5, "m.C.test1"):     {id: "m.C.test1", only: M5, line: 2},
		key("", "", "doc_txt"):       {id: "doc_txt", line: 3},
		key("zeo54", "", "m.D.test"): {id: "m.D.test", client: "zeo54", line: 4},
	}
	for _, c := range []struct {
		client string
		enc    Encoding
		id     string
		line   int // 0: not listed
	}{
		{"", Z5, "m.C.test1", 1},
		{"", M5, "m.C.test1", 2},
		{"", M5, "m.C.test2", 1},
		{"", Z5, "m.Cx.test1", 0},
		{"", Z5, "m.C", 0},
		{"", Z5, "doc_txt", 3},
		{"", Z5, "doc_txt@2", 0},
		{"", Z5, "m.D.test", 0},
		{"zeo54", Z5, "m.D.test", 4},
		{"zeo54", Z5, "m.C.test1", 0},
	} {
		ef, _, ok := lookup(efs, c.client, c.enc, c.id)
		if got := map[bool]int{true: ef.line}[ok]; got != c.line {
			t.Errorf("lookup(%q, %s, %q) = line %d, want %d", c.client, c.enc, c.id, got, c.line)
		}
	}
}
