package zconfig

import (
	"os"
	"strings"
	"unicode/utf8"
)

// substitute replaces $name, ${name} (from %define), $(NAME) (from the
// environment) and $$ (a literal $) in s, a value starting at pos. On a
// malformed or undefined reference it records an error at the `$` and
// returns false.
func (p *parser) substitute(s string, pos Pos) (string, bool) {
	if !strings.Contains(s, "$") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '$')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		b.WriteString(s[i : i+j])
		i += j
		if b.Len() > maxValueLen {
			p.errs.add(pos, "value is longer than %d bytes after substitution", maxValueLen)
			return "", false
		}
		// The position of this '$', worked out only when it is reported.
		dollar := i
		at := func() Pos {
			at := pos
			at.Col += utf8.RuneCountInString(s[:dollar])
			return at
		}
		if i+1 == len(s) {
			p.errs.add(at(), "lone '$' at the end of the value; write '$$' for a literal '$'")
			return "", false
		}
		var name, close string
		env := false
		switch c := s[i+1]; c {
		case '$':
			b.WriteByte('$')
			i += 2
			continue
		case '{', '(':
			env = c == '('
			close = map[byte]string{'{': "}", '(': ")"}[c]
			name = substitutionName(s[i+2:])
			if name == "" {
				p.errs.add(at(), "'$%c' is not followed by a name", c)
				return "", false
			}
			if !strings.HasPrefix(s[i+2+len(name):], close) {
				p.errs.add(at(), "'$%c%s' is not followed by '%s'", c, name, close)
				return "", false
			}
			i += 2 + len(name) + 1
		default:
			name = substitutionName(s[i+1:])
			if name == "" {
				p.errs.add(at(), "'$' is not followed by a name, '{', '(' or '$'; write '$$' for a literal '$'")
				return "", false
			}
			i += 1 + len(name)
		}
		if env {
			v, ok := os.LookupEnv(name)
			if !ok {
				p.errs.add(at(), "environment variable %s is not set", quote(name))
				return "", false
			}
			b.WriteString(v)
			continue
		}
		d, ok := p.defines[strings.ToLower(name)]
		if !ok {
			p.errs.add(at(), "undefined name %s (no %%define before this line)", quote(strings.ToLower(name)))
			return "", false
		}
		b.WriteString(d.value)
	}
	if b.Len() > maxValueLen {
		p.errs.add(pos, "value is longer than %d bytes after substitution", maxValueLen)
		return "", false
	}
	return b.String(), true
}

// maxValueLen bounds a value after substitution: nested %defines can grow
// exponentially (each line doubling the last), which no real configuration
// needs.
const maxValueLen = 1 << 20

// substitutionName returns the longest name ([a-zA-Z_][a-zA-Z0-9_]*) at the
// start of s, or "".
func substitutionName(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return s[:i]
		}
	}
	return s
}
