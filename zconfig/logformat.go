package zconfig

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// LogFormat is a log handler's format string read as Python's logging reads
// it, in one of the logger component's styles, checked as ZConfig checks it
// when a configuration loads: every field must be one a log record has
// (unless arbitrary-fields), its conversion must suit the field's type, and
// there must be at least one field.
type LogFormat struct {
	Style LogFormatStyle
	Parts []LogFormatPart
}

// LogFormatPart is literal text or one field of a LogFormat.
type LogFormatPart struct {
	Text  string // literal text, when Field is ""
	Field string
	// Classic style: the conversion of %(field)<Flags><Width>.<Prec><Verb>;
	// Width and Prec are -1 when absent. Template styles use Verb 's'.
	Flags       string
	Width, Prec int
	Verb        byte
}

// LogValue is the value of a record field for LogFormat.Format: a string,
// an int64, a float64, or a PyObject.
type LogValue any

// PyObject is a field value that is neither text nor a number (None, a
// tuple): Repr is both its str() and its repr().
type PyObject struct{ Repr string }

// logRecordFields are the fields of a Python log record and the type of
// their values: 's' text, 'i' integer, 'f' float, 'o' another object.
var logRecordFields = map[string]byte{
	"name": 's', "msg": 's', "args": 'o', "levelname": 's', "levelno": 'i',
	"pathname": 's', "filename": 's', "module": 's', "exc_info": 'o',
	"exc_text": 'o', "stack_info": 'o', "lineno": 'i', "funcName": 's',
	"created": 'f', "msecs": 'f', "relativeCreated": 'f', "thread": 'i',
	"threadName": 's', "processName": 's', "process": 'i', "message": 's',
	"asctime": 's',
}

// LogRecordField says whether name is a field of Python's log records.
func LogRecordField(name string) bool { _, ok := logRecordFields[name]; return ok }

// ParseLogFormat reads format in style, as ZConfig's FormatterFactory and
// Python's logging.Formatter check it. With arbitraryFields, names that
// are not record fields are allowed (their value is then the record's
// extra data, or missing).
func ParseLogFormat(format string, style LogFormatStyle, arbitraryFields bool) (*LogFormat, error) {
	f := &LogFormat{Style: style}
	if format == "" { // logging.Formatter's default
		format = map[LogFormatStyle]string{"template": "${message}", "safe-template": "${message}"}[style]
		if format == "" {
			format = "%(message)s"
		}
	}
	var err error
	switch style {
	case "", "classic":
		f.Style = "classic"
		err = f.parseClassic(format, arbitraryFields)
	case "template", "safe-template":
		err = f.parseTemplate(format, arbitraryFields, style == "safe-template")
	default:
		return nil, fmt.Errorf("format style %s is not implemented by zeoraid (use classic, template or safe-template)", quote(string(style)))
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// parseClassic reads Python's %-formatting with a mapping.
func (f *LogFormat) parseClassic(s string, arbitrary bool) error {
	var text strings.Builder
	fields := 0
	for i := 0; i < len(s); {
		if s[i] != '%' {
			text.WriteByte(s[i])
			i++
			continue
		}
		start := i
		i++
		if i < len(s) && s[i] == '%' {
			text.WriteByte('%')
			i++
			continue
		}
		p := LogFormatPart{Width: -1, Prec: -1}
		if i >= len(s) || s[i] != '(' {
			return fmt.Errorf("format %s: %s at %d has no field name; write %%(name)s", quote(s), quote(s[start:min(start+2, len(s))]), start)
		}
		depth, j := 1, i+1
		for ; j < len(s) && depth > 0; j++ {
			switch s[j] {
			case '(':
				depth++
			case ')':
				depth--
			}
		}
		if depth > 0 {
			return fmt.Errorf("format %s: incomplete format key at %d", quote(s), start)
		}
		p.Field, i = s[i+1:j-1], j
		for i < len(s) && strings.IndexByte("#0- +", s[i]) >= 0 {
			p.Flags += s[i : i+1]
			i++
		}
		var star bool
		p.Width, i, star = readCount(s, i)
		if i < len(s) && s[i] == '.' {
			var pstar bool
			p.Prec, i, pstar = readCount(s, i+1)
			if p.Prec < 0 {
				p.Prec = 0
			}
			star = star || pstar
		}
		if star {
			return fmt.Errorf("format %s: '*' needs a positional argument, which log records do not have", quote(s))
		}
		lengthModifier := false
		for i < len(s) && strings.IndexByte("hlL", s[i]) >= 0 {
			lengthModifier = true
			i++
		}
		if i >= len(s) {
			return fmt.Errorf("format %s: incomplete format", quote(s))
		}
		p.Verb = s[i]
		i++
		if p.Verb == '%' {
			text.WriteByte('%')
			continue
		}
		if strings.IndexByte("diouxXeEfFgGcrsa", p.Verb) < 0 {
			r, _ := utf8.DecodeRuneInString(s[i-1:])
			return fmt.Errorf("format %s: unsupported format character %q at %d", quote(s), r, i-1)
		}
		if err := checkField(p.Field, p.Verb, arbitrary); err != nil {
			return fmt.Errorf("format %s: %v", quote(s), err)
		}
		if text.Len() > 0 {
			f.Parts = append(f.Parts, LogFormatPart{Text: text.String()})
			text.Reset()
		}
		f.Parts = append(f.Parts, p)
		if !lengthModifier { // logging's check does not know C's length modifiers
			fields++
		}
	}
	if text.Len() > 0 {
		f.Parts = append(f.Parts, LogFormatPart{Text: text.String()})
	}
	if fields == 0 {
		return fmt.Errorf("format %s has no %%(field) in it", quote(s))
	}
	return nil
}

// readCount reads a width or precision at s[i:]: digits (-1 when none) or
// '*'.
func readCount(s string, i int) (n, next int, star bool) {
	if i < len(s) && s[i] == '*' {
		return -1, i + 1, true
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return -1, i, false
	}
	n, err := strconv.Atoi(s[i:j])
	if err != nil {
		n = 1 << 20
	}
	return n, j, false
}

// checkField refuses a field a record lacks, or a conversion that does not
// suit its type (Python raises TypeError for %d of text, say). An
// arbitrary field is checked as an integer, as ZConfig does.
func checkField(name string, verb byte, arbitrary bool) error {
	kind, ok := logRecordFields[name]
	if !ok {
		if !arbitrary {
			return fmt.Errorf("%s is not a field of log records (set arbitrary-fields to allow others)", quote(name))
		}
		kind = 'i'
	}
	bad := false
	switch verb {
	case 'd', 'i', 'u', 'e', 'E', 'f', 'F', 'g', 'G':
		bad = kind == 's' || kind == 'o'
	case 'x', 'X', 'o':
		bad = kind != 'i'
	case 'c':
		bad = kind != 'i'
	}
	if bad {
		what := map[byte]string{'s': "text", 'f': "a float", 'o': "not a number"}[kind]
		return fmt.Errorf("%%(%s)%c needs a number%s, and %s is %s", name, verb, map[bool]string{true: " (an integer)"}[verb == 'x' || verb == 'X' || verb == 'o' || verb == 'c'], quote(name), what)
	}
	return nil
}

// templateRE is Python's string.Template pattern: $$, $name, ${name}, or a
// bare $.
var templateRE = regexp.MustCompile(`(?i)\$(?:(\$)|([_a-z][_a-z0-9]*)|\{([_a-z][_a-z0-9]*)\}|)`)

// parseTemplate reads string.Template placeholders. The template style
// refuses a bare '$', unknown fields and a format without fields, as
// Python's logging and ZConfig do; safe-template leaves what it cannot
// fill as written.
func (f *LogFormat) parseTemplate(s string, arbitrary, safe bool) error {
	var text strings.Builder
	fields, last := 0, 0
	for _, m := range templateRE.FindAllStringSubmatchIndex(s, -1) {
		text.WriteString(s[last:m[0]])
		last = m[1]
		name := ""
		switch {
		case m[2] >= 0:
			text.WriteByte('$')
			continue
		case m[4] >= 0:
			name = s[m[4]:m[5]]
		case m[6] >= 0:
			name = s[m[6]:m[7]]
		default:
			if !safe {
				return fmt.Errorf("format %s: a bare '$' at %d (write $$ for a dollar sign)", quote(s), m[0])
			}
			text.WriteByte('$')
			continue
		}
		if !LogRecordField(name) && !arbitrary && !safe {
			return fmt.Errorf("format %s: %s is not a field of log records (set arbitrary-fields to allow others)", quote(s), quote(name))
		}
		if text.Len() > 0 {
			f.Parts = append(f.Parts, LogFormatPart{Text: text.String()})
			text.Reset()
		}
		f.Parts = append(f.Parts, LogFormatPart{Field: name, Width: -1, Prec: -1, Verb: 's', Text: s[m[0]:m[1]]})
		fields++
	}
	text.WriteString(s[last:])
	if text.Len() > 0 {
		f.Parts = append(f.Parts, LogFormatPart{Text: text.String()})
	}
	if fields == 0 && !safe {
		return fmt.Errorf("format %s has no $field in it", quote(s))
	}
	return nil
}

// Uses says whether the format refers to field name (asctime is only
// computed when used, as in Python).
func (f *LogFormat) Uses(name string) bool {
	for _, p := range f.Parts {
		if p.Field == name {
			return true
		}
	}
	return false
}

// Format renders the format with the record's field values; value returns
// false for a field the record lacks (an arbitrary field the entry does not
// carry). Python's logging drops such a line with a traceback; here the
// line is kept, the field written as its placeholder (safe-template) or as
// "<missing NAME>".
func (f *LogFormat) Format(value func(name string) (LogValue, bool)) string {
	var b strings.Builder
	for _, p := range f.Parts {
		if p.Field == "" {
			b.WriteString(p.Text)
			continue
		}
		v, ok := value(p.Field)
		if !ok {
			if f.Style == "safe-template" {
				b.WriteString(p.Text)
			} else {
				b.WriteString("<missing " + p.Field + ">")
			}
			continue
		}
		b.WriteString(p.format(v))
	}
	return b.String()
}

// format renders one value as Python's %-operator does.
func (p *LogFormatPart) format(v LogValue) string {
	flags := strings.ReplaceAll(p.Flags, "#", "")
	alt := strings.Contains(p.Flags, "#")
	spec := func(verb string, prec int) string {
		s := "%" + flags
		if p.Width >= 0 {
			s += strconv.Itoa(p.Width)
		}
		if prec >= 0 {
			s += "." + strconv.Itoa(prec)
		}
		return s + verb
	}
	switch p.Verb {
	case 's', 'r', 'a':
		s := pyStr(v)
		if p.Verb != 's' {
			s = pyRepr(v)
		}
		return fmt.Sprintf(spec("s", p.Prec), s)
	case 'd', 'i', 'u':
		return fmt.Sprintf(spec("d", p.Prec), pyInt(v))
	case 'x', 'X', 'o':
		n := pyInt(v)
		digits := strconv.FormatInt(abs(n), map[byte]int{'x': 16, 'X': 16, 'o': 8}[p.Verb])
		if p.Verb == 'X' {
			digits = strings.ToUpper(digits)
		}
		if p.Prec > len(digits) {
			digits = strings.Repeat("0", p.Prec-len(digits)) + digits
		}
		if alt {
			digits = map[byte]string{'x': "0x", 'X': "0X", 'o': "0o"}[p.Verb] + digits
		}
		return padNumber(digits, n < 0, p.Flags, p.Width)
	case 'c':
		return fmt.Sprintf(spec("c", -1), rune(pyInt(v)))
	}
	prec := p.Prec
	if prec < 0 {
		prec = 6
	}
	if alt {
		flags = "#" + flags
	}
	return fmt.Sprintf(spec(string(p.Verb), prec), pyFloat(v))
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// padNumber lays out digits (with any prefix) with the sign and the
// padding that flags and width ask for.
func padNumber(digits string, neg bool, flags string, width int) string {
	sign := ""
	switch {
	case neg:
		sign = "-"
	case strings.Contains(flags, "+"):
		sign = "+"
	case strings.Contains(flags, " "):
		sign = " "
	}
	n := len(sign) + len(digits)
	switch {
	case width <= n:
		return sign + digits
	case strings.Contains(flags, "-"):
		return sign + digits + strings.Repeat(" ", width-n)
	case strings.Contains(flags, "0"):
		prefix := ""
		if len(digits) > 1 && digits[0] == '0' && strings.ContainsAny(digits[1:2], "xXo") {
			prefix, digits = digits[:2], digits[2:]
		}
		return sign + prefix + strings.Repeat("0", width-n) + digits
	}
	return strings.Repeat(" ", width-n) + sign + digits
}

func pyStr(v LogValue) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return pyFloatRepr(v)
	case PyObject:
		return v.Repr
	}
	return fmt.Sprint(v)
}

// pyRepr is Python's repr() of v: text in quotes.
func pyRepr(v LogValue) string {
	s, ok := v.(string)
	if !ok {
		return pyStr(v)
	}
	q := "'"
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = `"`
	}
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`, "\t", `\t`, q, `\`+q)
	return q + r.Replace(s) + q
}

// pyFloatRepr is Python's repr() of a float: the shortest text that reads
// back, with ".0" on whole numbers.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func pyInt(v LogValue) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	}
	return 0
}

func pyFloat(v LogValue) float64 {
	switch v := v.(type) {
	case int64:
		return float64(v)
	case float64:
		return v
	}
	return 0
}
