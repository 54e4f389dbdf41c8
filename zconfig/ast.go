// Package zconfig reads the ZConfig language as zeo.conf uses it: sections,
// keys, %define/$substitution, %include and %import. It produces a fully
// expanded syntax tree (every node positioned as file:line:col), prints that
// tree back in a canonical form, and decodes sections strictly into Go structs
// tagged with ZConfig key names. It knows nothing of storages or servers:
// what a section type or an %import means is decided by its users.
package zconfig

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a position in a configuration file. Lines and columns start at 1;
// columns count characters (runes), as an editor shows them.
type Pos struct {
	File      string
	Line, Col int
}

// String formats the position as "file:line:col", the form editors and
// compilers use, so that messages can be clicked through.
func (p Pos) String() string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// compare orders positions by file name, then line, then column.
func (p Pos) compare(q Pos) int {
	if c := strings.Compare(p.File, q.File); c != 0 {
		return c
	}
	if c := cmp.Compare(p.Line, q.Line); c != 0 {
		return c
	}
	return cmp.Compare(p.Col, q.Col)
}

// Error is one problem found in a configuration, tied to the place in the
// file that causes it.
type Error struct {
	Pos Pos
	Msg string
	Err error // the cause, when there is one (a *MissingDirError, …)
}

// Error formats the problem as "file:line:col: msg".
func (e *Error) Error() string {
	return e.Pos.String() + ": " + e.Msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrorList collects every problem found in a configuration, so that a user
// fixes them all in one round instead of one per run.
type ErrorList []*Error

// Error lists the problems one per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// add records a problem at pos.
func (l *ErrorList) add(pos Pos, format string, args ...any) {
	*l = append(*l, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// addCause records a problem at pos caused by err.
func (l *ErrorList) addCause(pos Pos, err error, format string, args ...any) {
	*l = append(*l, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...), Err: err})
}

// err returns the list sorted by position without duplicates (a file
// included twice reports its problems once), or nil when it is empty.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	sorted := slices.Clone(l)
	slices.SortStableFunc(sorted, func(a, b *Error) int {
		if c := a.Pos.compare(b.Pos); c != 0 {
			return c
		}
		return strings.Compare(a.Msg, b.Msg)
	})
	sorted = slices.CompactFunc(sorted, func(a, b *Error) bool {
		return a.Pos == b.Pos && a.Msg == b.Msg
	})
	return sorted
}

// Section is one `<type name>` … `</type>` block, or the whole file (the
// root, whose Type is ""). Includes are already expanded into it.
type Section struct {
	Pos      Pos // position of the opening tag (root: file:1:1)
	End      Pos // position of the closing tag (root: just after the last line)
	Type     string
	Name     string
	Keys     []*Key
	Sections []*Section
	Imports  []*Import // %import directives that occurred directly in this section
}

// Key is one `key value` line. Name is lower-cased; Value is as written,
// after $-substitution.
type Key struct {
	Pos      Pos
	Name     string
	Value    string
	ValuePos Pos // where the value starts (just after the key when it is empty)
}

// Import is one `%import package.name` directive. Its meaning (which
// section types it makes available) is decided by the caller.
type Import struct {
	Pos     Pos
	Package string
}

// describe names the section in messages: "<filestorage>" or "top level".
func (s *Section) describe() string {
	if s.Type == "" {
		return "top level"
	}
	return "<" + s.Type + ">"
}
