package zconfig

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are positioned,
// and that whatever it accepts prints to a form that parses back to the
// same tree and prints identically again (Print is canonical).
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"<zeo>\n  address 8100\n</zeo>\n",
		"%define a $$b\nk ${a}$(HOME)\n<x y/>\n",
		"<a>\n<b>\n</a>\n</b>\n",
		"key\n%import a.b\n<s>\n%import c\n</s>\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		root, err := Parse("fuzz.conf", src)
		if err != nil {
			list, ok := err.(ErrorList)
			if !ok || len(list) == 0 {
				t.Fatalf("error is %T %v, want a non-empty ErrorList", err, err)
			}
			for _, e := range list {
				if e.Pos.File == "" || e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Fatalf("unpositioned error %q", e.Error())
				}
			}
			return
		}
		var first strings.Builder
		if err := Print(&first, root); err != nil {
			t.Fatalf("Print refuses a parsed tree: %v", err)
		}
		again, err := Parse("fuzz.conf", []byte(first.String()))
		if err != nil {
			t.Fatalf("printed form does not parse: %v\n%q", err, first.String())
		}
		if !sameTree(root, again) {
			t.Fatalf("printed form parses to another tree:\n%q\n%q", src, first.String())
		}
		var second strings.Builder
		if err := Print(&second, again); err != nil {
			t.Fatal(err)
		}
		if first.String() != second.String() {
			t.Fatalf("Print is not canonical:\n%q\n%q", first.String(), second.String())
		}
	})
}
