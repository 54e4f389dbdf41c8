package zconfig

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
)

// ParseFile reads and parses the configuration file at path; see Parse.
func ParseFile(path string) (*Section, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, ErrorList{{Pos: Pos{File: path, Line: 1, Col: 1}, Msg: "cannot read configuration: " + describeIOError(err)}}
	}
	return Parse(path, src)
}

// Parse parses src, read from filename, into its root section, with
// %define substitutions applied and %include files (relative to filename's
// directory) expanded in place. On failure the error is an ErrorList holding
// every problem found, sorted by position, and the section is nil.
func Parse(filename string, src []byte) (*Section, error) {
	p := &parser{defines: map[string]definition{}, broken: map[*Section]bool{}}
	root := &Section{Pos: Pos{File: filename, Line: 1, Col: 1}}
	p.parseFile(root, filename, string(src), Pos{})
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return root, nil
}

// parser holds what lives across the files of one Parse: the problems
// found, the %define table (shared with included files, as in ZConfig) and
// the chain of files being included, to detect cycles.
type parser struct {
	errs    ErrorList
	defines map[string]definition
	chain   []includedFile
	broken  map[*Section]bool // opened by a malformed start tag (already reported)
}

// definition is one %define.
type definition struct {
	value string
	pos   Pos
}

// includedFile is a file being parsed: the name used in positions and the
// absolute path used to detect include cycles.
type includedFile struct {
	name, abs string
}

// directiveNames are the directives ZConfig knows.
var directiveNames = []string{"define", "import", "include"}

// defineNameRE is what %define accepts as a name (ZConfig's substitution
// names).
var defineNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// packageNameRE is a dotted Python package name, what %import accepts.
var packageNameRE = regexp.MustCompile(`^[_a-zA-Z][_a-zA-Z0-9]*(?:\.[_a-zA-Z][_a-zA-Z0-9]*)*$`)

// parseFile parses the text of one file into sec. includedAt is the position
// of the %include that brought it in (zero for the main file). Sections
// opened in a file must be closed in the same file.
func (p *parser) parseFile(sec *Section, filename, src string, includedAt Pos) {
	abs, err := filepath.Abs(filename)
	if err != nil {
		abs = filepath.Clean(filename)
	}
	p.chain = append(p.chain, includedFile{name: filename, abs: abs})
	defer func() { p.chain = p.chain[:len(p.chain)-1] }()

	lines := splitLines(src)
	stack := []*Section{sec}
	for i, text := range lines {
		lineNo := i + 1
		if !utf8.ValidString(text) {
			bad := strings.IndexFunc(text, func(r rune) bool { return r == utf8.RuneError })
			p.errs.add(Pos{filename, lineNo, utf8.RuneCountInString(text[:bad]) + 1}, "invalid UTF-8 in line")
			continue
		}
		if strings.Trim(text, space) == "" {
			continue
		}
		ln, err := lineParser.ParseString(filename, text)
		if err != nil {
			p.syntaxError(err, filename, lineNo, text)
			stack = p.recoverTag(stack, text, Pos{File: filename, Line: lineNo, Col: 1}, includedAt)
			continue
		}
		cur := stack[len(stack)-1]
		switch {
		case ln.Comment != nil:
		case ln.Start != nil:
			s := &Section{
				Pos:  toPos(ln.Start.Pos, lineNo),
				Type: strings.ToLower(strings.TrimPrefix(ln.Start.Type, "<")),
			}
			if ln.Start.Name != nil {
				s.Name = strings.ToLower(ln.Start.Name.Text)
			}
			cur.Sections = append(cur.Sections, s)
			if ln.Start.Empty {
				s.End = s.Pos
			} else {
				stack = append(stack, s)
			}
		case ln.End != nil:
			typ := strings.ToLower(strings.TrimPrefix(ln.End.Type, "</"))
			stack = p.endSection(stack, typ, toPos(ln.End.Pos, lineNo), includedAt)
		case ln.Directive != nil:
			p.directive(cur, ln.Directive, lineNo)
		case ln.Key != nil:
			p.key(cur, ln.Key, lineNo)
		}
	}
	eof := Pos{File: filename, Line: len(lines) + 1, Col: 1}
	for _, s := range stack[1:] {
		if !p.broken[s] {
			p.errs.add(s.Pos, "section <%s> is not closed before the end of the file", s.Type)
		}
		s.End = eof
	}
	if includedAt == (Pos{}) {
		sec.End = eof
	}
}

// splitLines splits src at line breaks as Python's universal newlines do
// (\n, \r\n and a lone \r). A final line break does not start a line.
func splitLines(src string) []string {
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	src = strings.TrimSuffix(src, "\n")
	if src == "" {
		return nil
	}
	return strings.Split(src, "\n")
}

// toPos converts a position within a single line to a file position.
func toPos(p lexer.Position, lineNo int) Pos {
	return Pos{File: p.Filename, Line: lineNo, Col: p.Column}
}

// syntaxError records a line the grammar rejected, saying what kind of line
// it looked like and what was wrong where.
func (p *parser) syntaxError(err error, filename string, lineNo int, text string) {
	trimmed := strings.TrimLeft(text, space)
	kind := "malformed line"
	switch {
	case strings.HasPrefix(trimmed, "</"):
		kind = "malformed section end tag"
	case strings.HasPrefix(trimmed, "<"):
		kind = "malformed section start tag"
	case strings.HasPrefix(trimmed, "%"):
		kind = "malformed directive"
	}
	pos := Pos{File: filename, Line: lineNo, Col: 1}
	msg := err.Error()
	var lexErr *lexer.Error
	var perr participle.Error
	switch {
	case errors.As(err, &lexErr):
		pos.Col = lexErr.Pos.Column
		if runes := []rune(text); pos.Col >= 1 && pos.Col <= len(runes) {
			msg = "unexpected " + quote(string(runes[pos.Col-1]))
			if runes[pos.Col-1] == '<' {
				msg = "'<' must be followed directly by the section type"
			}
		}
	case errors.As(err, &perr):
		pos.Col = perr.Position().Column
		msg = participleWording.Replace(perr.Message())
	}
	p.errs.add(pos, "%s: %s", kind, msg)
}

// participleWording rewrites the grammar's token names in participle's
// messages into the words a configuration's author knows.
var participleWording = strings.NewReplacer(
	`unexpected token "<EOF>"`, "unexpected end of line",
	"<close>", "'>'",
	"<ident>", "a section name",
	"<slash>", "'/'",
	"<value>", "a value",
	"unexpected token", "unexpected",
)

// Malformed tags whose section type can still be read.
var (
	brokenStartRE = regexp.MustCompile(`^` + spaceSet + `*<` + spaceSet + `*(` + identRE + `)`)
	brokenEndRE   = regexp.MustCompile(`^` + spaceSet + `*</` + spaceSet + `*(` + identRE + `)`)
)

// recoverTag lets a malformed tag line (already reported) still open or
// close its section, so that its partner tag does not cause a second error.
// A section opened this way is never reported as unclosed.
func (p *parser) recoverTag(stack []*Section, text string, pos Pos, includedAt Pos) []*Section {
	if m := brokenEndRE.FindStringSubmatchIndex(text); m != nil {
		pos.Col += utf8.RuneCountInString(text[:m[0]])
		return p.endSection(stack, strings.ToLower(text[m[2]:m[3]]), pos, includedAt)
	}
	m := brokenStartRE.FindStringSubmatchIndex(text)
	if m == nil || strings.HasSuffix(strings.TrimRight(text, space), "/>") {
		return stack
	}
	pos.Col += utf8.RuneCountInString(text[:m[0]])
	s := &Section{Pos: pos, Type: strings.ToLower(text[m[2]:m[3]])}
	p.broken[s] = true
	cur := stack[len(stack)-1]
	cur.Sections = append(cur.Sections, s)
	return append(stack, s)
}

// endSection closes the innermost open section with an end tag for typ at
// pos and returns the new stack. A mismatched tag that names a section further out closes
// the sections in between (each reported as not closed); one that names no
// open section is taken for a misspelling of the innermost one.
func (p *parser) endSection(stack []*Section, typ string, pos Pos, includedAt Pos) []*Section {
	if len(stack) == 1 {
		if includedAt != (Pos{}) {
			p.errs.add(pos, "unexpected end tag </%s>: no section was opened in this included file", typ)
		} else {
			p.errs.add(pos, "unexpected end tag </%s>: no section is open", typ)
		}
		return stack
	}
	top := stack[len(stack)-1]
	if top.Type == typ {
		top.End = pos
		return stack[:len(stack)-1]
	}
	for j := len(stack) - 2; j >= 1; j-- {
		if stack[j].Type != typ {
			continue
		}
		for _, s := range stack[j+1:] {
			if !p.broken[s] {
				p.errs.add(s.Pos, "section <%s> is not closed before </%s> at %d:%d", s.Type, typ, pos.Line, pos.Col)
			}
			s.End = pos
		}
		stack[j].End = pos
		return stack[:j]
	}
	p.errs.add(pos, "mismatched end tag </%s>: section <%s> opened at %d:%d is closed by </%s>", typ, top.Type, top.Pos.Line, top.Pos.Col, top.Type)
	top.End = pos
	return stack[:len(stack)-1]
}

// key adds a `key value` line to sec.
func (p *parser) key(sec *Section, kl *keyLine, lineNo int) {
	pos := toPos(kl.Pos, lineNo)
	if i := strings.IndexAny(kl.Name, "()"); i >= 0 {
		at := pos
		at.Col += utf8.RuneCountInString(kl.Name[:i])
		p.errs.add(at, "malformed key %s: '(' and ')' are not allowed in keys", quote(kl.Name))
		return
	}
	k := &Key{Pos: pos, Name: strings.ToLower(kl.Name)}
	k.ValuePos = pos
	k.ValuePos.Col += utf8.RuneCountInString(kl.Name)
	if kl.Value != nil {
		k.ValuePos = toPos(kl.Value.Pos, lineNo)
		v, ok := p.substitute(kl.Value.Text, k.ValuePos)
		if !ok {
			return
		}
		k.Value = v
	}
	sec.Keys = append(sec.Keys, k)
}

// directive carries out a %define, %include or %import line.
func (p *parser) directive(sec *Section, d *directive, lineNo int) {
	pos := toPos(d.Pos, lineNo)
	name := strings.TrimPrefix(d.Name, "%")
	if name == "" {
		p.errs.add(pos, "malformed directive: '%%' must be followed by define, import or include")
		return
	}
	if !slices.Contains(directiveNames, name) {
		msg := "unknown directive %" + name
		if s := Suggest(strings.ToLower(name), directiveNames); s != "" {
			msg += "; did you mean %" + s + "?"
		}
		p.errs.add(pos, "%s", msg)
		return
	}
	if d.Arg == nil {
		p.errs.add(pos, "missing argument to %%%s", name)
		return
	}
	argPos := toPos(d.Arg.Pos, lineNo)
	switch name {
	case "define":
		p.define(d.Arg.Text, argPos)
	case "include":
		path, ok := p.substitute(d.Arg.Text, argPos)
		if !ok {
			return
		}
		p.include(sec, path, argPos)
	case "import":
		pkg, ok := p.substitute(d.Arg.Text, argPos)
		if !ok {
			return
		}
		if !packageNameRE.MatchString(pkg) {
			p.errs.add(argPos, "%%import needs a dotted package name, not %s", quote(pkg))
			return
		}
		sec.Imports = append(sec.Imports, &Import{Pos: pos, Package: pkg})
	}
}

// define handles `%define NAME [VALUE]`; arg is everything after %define.
func (p *parser) define(arg string, pos Pos) {
	name, rest := arg, ""
	if i := strings.IndexAny(arg, space); i >= 0 {
		name, rest = arg[:i], strings.TrimLeft(arg[i:], space)
	}
	if !defineNameRE.MatchString(name) {
		p.errs.add(pos, "%%define: %s is not a valid name (letters, digits and '_', not starting with a digit)", quote(name))
		return
	}
	name = strings.ToLower(name)
	valuePos := pos
	valuePos.Col += utf8.RuneCountInString(arg[:len(arg)-len(rest)])
	v, ok := p.substitute(rest, valuePos)
	if !ok {
		return
	}
	if old, found := p.defines[name]; found {
		if old.value != v {
			p.errs.add(pos, "cannot redefine %s as %s: defined at %s as %s", quote(name), quote(v), old.pos, quote(old.value))
		}
		return
	}
	p.defines[name] = definition{value: v, pos: pos}
}

// include parses the file at path (relative to the including file's
// directory) into sec, unless that would form a cycle.
func (p *parser) include(sec *Section, path string, at Pos) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(at.File), path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	for i, f := range p.chain {
		if f.abs != abs {
			continue
		}
		names := make([]string, 0, len(p.chain)-i+1)
		for _, g := range p.chain[i:] {
			names = append(names, g.name)
		}
		names = append(names, path)
		p.errs.add(at, "include cycle: %s", strings.Join(names, " -> "))
		return
	}
	// Only regular files: a device or FIFO (say /dev/zero) would never end.
	fi, err := os.Stat(path)
	if err == nil && !fi.Mode().IsRegular() {
		p.errs.add(at, "cannot include %s: not a regular file", quote(path))
		return
	}
	src, err := os.ReadFile(path)
	if err != nil {
		p.errs.add(at, "cannot include %s: %s", quote(path), describeIOError(err))
		return
	}
	p.parseFile(sec, path, string(src), at)
}

// describeIOError drops the path an *os.PathError repeats, since messages
// already name the file.
func describeIOError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// quote puts s in single quotes for messages, as ZConfig does; unprintable
// characters are escaped.
func quote(s string) string {
	q := strconv.Quote(s)
	return "'" + strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`) + "'"
}
