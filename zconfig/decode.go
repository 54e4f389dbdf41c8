package zconfig

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// Decode fills the struct v points to from section s, strictly: every key
// and subsection of s must be claimed by a field, or it is an error naming
// the closest valid one.
//
// Fields are bound by the tag `zconfig:"key-name[,required][,default=VALUE]"`
// (default must come last and takes the rest of the tag, commas included) and
// documented by `doc:"…"`. The field's Go type selects the ZConfig datatype:
// string, bool (boolean), int and int64 (integer), float64 (float),
// time.Duration (time-interval), ByteSize (byte-size), SocketAddress
// (socket-address), BindAddress (socket-binding-address), ConnectAddress
// (socket-connection-address), InetAddress (inet-address), ExistingDirPath
// (existing-dirpath), DottedName (dotted-name), and the logger component's
// LoggingLevel, SyslogFacility, LogFormatStyle, EscapedString,
// HTTPLoggerURL and HTTPMethod. A pointer to one of these stays nil when
// the key is absent and has no default; a slice of one is a multikey, which
// may repeat (any other key may not).
//
// `zconfig:"TYPE,section[,required]"` on a *S or []*S field (S a struct, or
// Section to take the section undecoded) receives the subsections of that
// type, decoded recursively; *S takes at most one. `zconfig:"*"` on a
// []*Section field receives every subsection no other field takes.
// `zconfig:",name"` on a string field receives the section's name, and
// `zconfig:",source"` on a *Section field the section itself (for checks
// that need the positions of its keys).
// Anonymous struct fields without a tag are flattened into the outer struct.
// Fields a section leaves alone keep their value.
//
// Problems with the configuration come back as an ErrorList (every problem,
// each at the key, value or section concerned); a v that is not a pointer to
// a struct, or a struct with malformed tags, is a programming error reported
// by a plain error.
func Decode(s *Section, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("zconfig: Decode needs a non-nil pointer to a struct, not %T", v)
	}
	sch, err := schemaOf(rv.Elem().Type())
	if err != nil {
		return err
	}
	var errs ErrorList
	sch.decode(s, rv.Elem(), &errs)
	return errs.err()
}

// KeyDoc describes one key or subsection slot of a decoding target, for
// generated documentation (`zeoraid types`). Slots of nested sections follow
// their section's entry, named "section/key".
type KeyDoc struct {
	Name     string // key name, section type, or "*" for the catch-all slot
	Type     string // ZConfig datatype ("boolean", "byte-size", …) or "section"
	Default  string // as written in the tag; "" when none
	Doc      string
	Required bool
	Multi    bool // the key may repeat / the section may occur several times
	Section  bool
}

// Describe lists the keys and subsection slots of v (a struct or a pointer
// to one) in field order. Like regexp.MustCompile it panics when v is not a
// struct or its tags are malformed: the types passed are fixed in code, so
// this is found by the first test that describes them.
func Describe(v any) []KeyDoc {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("zconfig: Describe needs a struct, not %T", v))
	}
	sch, err := schemaOf(t)
	if err != nil {
		panic(err)
	}
	return sch.describe("", nil)
}

// DatatypeType returns the Go type Decode reads a ZConfig datatype into
// (the Type of a KeyDoc), so that a schema known only by its description
// can be rebuilt as a struct (the options of a plugin's section types).
// Where two Go types hold one datatype, the wider one is returned (int64
// for integer).
func DatatypeType(name string) (reflect.Type, bool) {
	var found reflect.Type
	for t, c := range converters {
		if c.typeName != name {
			continue
		}
		if found == nil || t.Size() > found.Size() || (t.Size() == found.Size() && t.String() > found.String()) {
			found = t
		}
	}
	return found, found != nil
}

// slotKind says what a tagged field receives.
type slotKind int

const (
	keySlot slotKind = iota
	sectionSlot
	catchAllSlot
	nameSlot
	sourceSlot
)

// slot is one tagged field of a decoding target.
type slot struct {
	kind     slotKind
	index    []int // reflect field index, through flattened anonymous structs
	name     string
	required bool
	def      string
	hasDef   bool
	doc      string
	multi    bool // slice field
	optional bool // pointer to a scalar
	conv     *converter
	elem     reflect.Type // section slots: the struct type S of *S / []*S
	sub      *schema      // section slots: the plan of S (nil for Section)
}

// schema is the decoding plan of one struct type.
type schema struct {
	slots []*slot
}

// converter turns a value into one ZConfig datatype held by a Go type.
type converter struct {
	typeName string
	parse    func(string) (reflect.Value, error)
}

var (
	sectionType = reflect.TypeFor[Section]()
	converters  = map[reflect.Type]*converter{
		reflect.TypeFor[string](): {"string", func(s string) (reflect.Value, error) { return reflect.ValueOf(s), nil }},
		reflect.TypeFor[bool](): {"boolean", func(s string) (reflect.Value, error) {
			b, err := parseBoolean(s)
			return reflect.ValueOf(b), err
		}},
		reflect.TypeFor[int](): {"integer", func(s string) (reflect.Value, error) {
			n, err := parseInteger(s, strconvIntSize)
			return reflect.ValueOf(int(n)), err
		}},
		reflect.TypeFor[int64](): {"integer", func(s string) (reflect.Value, error) {
			n, err := parseInteger(s, 64)
			return reflect.ValueOf(n), err
		}},
		reflect.TypeFor[float64](): {"float", func(s string) (reflect.Value, error) {
			f, err := parseFloat(s)
			return reflect.ValueOf(f), err
		}},
		reflect.TypeFor[time.Duration](): {"time-interval", func(s string) (reflect.Value, error) {
			d, err := parseInterval(s)
			return reflect.ValueOf(d), err
		}},
		reflect.TypeFor[ByteSize](): {"byte-size", func(s string) (reflect.Value, error) {
			n, err := parseByteSize(s)
			return reflect.ValueOf(n), err
		}},
		reflect.TypeFor[ExistingDirPath](): {"existing-dirpath", func(s string) (reflect.Value, error) {
			p, err := parseExistingDirPath(s)
			return reflect.ValueOf(p), err
		}},
		reflect.TypeFor[SocketAddress](): {"socket-address", func(s string) (reflect.Value, error) {
			a, err := parseSocketAddress(s, "")
			return reflect.ValueOf(a), err
		}},
		reflect.TypeFor[BindAddress](): {"socket-binding-address", func(s string) (reflect.Value, error) {
			a, err := parseSocketAddress(s, "")
			return reflect.ValueOf(BindAddress(a)), err
		}},
		reflect.TypeFor[ConnectAddress](): {"socket-connection-address", func(s string) (reflect.Value, error) {
			a, err := parseConnectAddress(s)
			return reflect.ValueOf(a), err
		}},
		reflect.TypeFor[InetAddress](): {"inet-address", func(s string) (reflect.Value, error) {
			a, err := parseInetAddress(s, "")
			return reflect.ValueOf(InetAddress(a)), err
		}},
		reflect.TypeFor[DottedName](): {"dotted-name", func(s string) (reflect.Value, error) {
			n, err := parseDottedName(s)
			return reflect.ValueOf(n), err
		}},
		reflect.TypeFor[LoggingLevel](): {"logging-level", func(s string) (reflect.Value, error) {
			l, err := parseLoggingLevel(s)
			return reflect.ValueOf(l), err
		}},
		reflect.TypeFor[SyslogFacility](): {"syslog-facility", func(s string) (reflect.Value, error) {
			f, err := parseSyslogFacility(s)
			return reflect.ValueOf(f), err
		}},
		reflect.TypeFor[LogFormatStyle](): {"log-format-style", func(s string) (reflect.Value, error) {
			st, err := parseLogFormatStyle(s)
			return reflect.ValueOf(st), err
		}},
		reflect.TypeFor[EscapedString](): {"escaped-string", func(s string) (reflect.Value, error) {
			return reflect.ValueOf(parseEscapedString(s)), nil
		}},
		reflect.TypeFor[HTTPLoggerURL](): {"http-handler-url", func(s string) (reflect.Value, error) {
			u, err := parseHTTPLoggerURL(s)
			return reflect.ValueOf(u), err
		}},
		reflect.TypeFor[HTTPMethod](): {"get-or-post", func(s string) (reflect.Value, error) {
			m, err := parseHTTPMethod(s)
			return reflect.ValueOf(m), err
		}},
	}
)

// strconvIntSize is the size of int in bits.
const strconvIntSize = 32 << (^uint(0) >> 63)

var (
	schemaMu sync.Mutex
	schemas  = map[reflect.Type]*schema{}
)

// schemaOf returns the decoding plan of struct type t, checking its tags.
// Plans are made once per type and kept.
func schemaOf(t reflect.Type) (*schema, error) {
	schemaMu.Lock()
	defer schemaMu.Unlock()
	var added []reflect.Type
	sch, err := buildSchema(t, &added)
	if err != nil {
		for _, a := range added {
			delete(schemas, a)
		}
		return nil, fmt.Errorf("zconfig: %w", err)
	}
	return sch, nil
}

// buildSchema makes the plan of t with schemaMu held. The plan is
// registered before its fields are read, so that a type containing itself
// through a section slot (a RAID of RAIDs) refers to its own plan; added
// collects the types registered, to undo them on error.
func buildSchema(t reflect.Type, added *[]reflect.Type) (*schema, error) {
	if sch, ok := schemas[t]; ok {
		return sch, nil
	}
	sch := &schema{}
	schemas[t] = sch
	*added = append(*added, t)
	if err := sch.addFields(t, nil, added); err != nil {
		return nil, err
	}
	return sch, nil
}

// addFields adds the tagged fields of t (reached through index) to sch.
func (sch *schema) addFields(t reflect.Type, index []int, added *[]reflect.Type) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, tagged := f.Tag.Lookup("zconfig")
		idx := append(slices.Clone(index), i)
		if !tagged && f.Anonymous && f.Type.Kind() == reflect.Struct {
			if err := sch.addFields(f.Type, idx, added); err != nil {
				return err
			}
			continue
		}
		if !tagged || tag == "-" {
			continue
		}
		if !f.IsExported() {
			return fmt.Errorf("%s.%s: tagged field is not exported", t, f.Name)
		}
		sl, err := newSlot(f, tag, added)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		sl.index = idx
		for _, other := range sch.slots {
			if other.kind == sl.kind && other.name == sl.name {
				return fmt.Errorf("%s.%s: %q is bound twice", t, f.Name, sl.name)
			}
		}
		sch.slots = append(sch.slots, sl)
	}
	return nil
}

// newSlot reads the tag of field f.
func newSlot(f reflect.StructField, tag string, added *[]reflect.Type) (*slot, error) {
	sl := &slot{doc: f.Tag.Get("doc")}
	if i := strings.Index(tag, ",default="); i >= 0 {
		sl.def, sl.hasDef, tag = tag[i+len(",default="):], true, tag[:i]
	}
	parts := strings.Split(tag, ",")
	sl.name = parts[0]
	isSection, isName, isSource := false, false, false
	for _, opt := range parts[1:] {
		switch opt {
		case "required":
			sl.required = true
		case "section":
			isSection = true
		case "name":
			isName = true
		case "source":
			isSource = true
		default:
			return nil, fmt.Errorf("unknown tag option %q", opt)
		}
	}
	if sl.name != strings.ToLower(sl.name) || strings.ContainsAny(sl.name, space+"()") {
		return nil, fmt.Errorf("name %q must be lower-case without blanks or parentheses", sl.name)
	}
	if sl.required && sl.hasDef {
		return nil, fmt.Errorf("a required key cannot have a default")
	}
	t := f.Type
	switch {
	case isName:
		if sl.name != "" || t.Kind() != reflect.String || sl.required || sl.hasDef {
			return nil, fmt.Errorf(`the section name goes in a string field tagged ",name" alone`)
		}
		sl.kind = nameSlot
		return sl, nil
	case isSource:
		if sl.name != "" || t != reflect.PointerTo(sectionType) || sl.required || sl.hasDef {
			return nil, fmt.Errorf(`the section itself goes in a *zconfig.Section field tagged ",source" alone`)
		}
		sl.kind = sourceSlot
		return sl, nil
	case sl.name == "*":
		if t != reflect.TypeFor[[]*Section]() || len(parts) > 1 || sl.hasDef {
			return nil, fmt.Errorf(`the catch-all slot "*" must be a []*zconfig.Section without options`)
		}
		sl.kind, sl.multi = catchAllSlot, true
		return sl, nil
	case sl.name == "":
		return nil, fmt.Errorf("tag has no key name")
	case isSection:
		if sl.hasDef {
			return nil, fmt.Errorf("a section cannot have a default")
		}
		sl.kind = sectionSlot
		if t.Kind() == reflect.Slice {
			sl.multi, t = true, t.Elem()
		}
		if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
			return nil, fmt.Errorf("a section slot must be a pointer to a struct or a slice of them, not %s", f.Type)
		}
		sl.elem = t.Elem()
		if sl.elem != sectionType {
			sub, err := buildSchema(sl.elem, added)
			if err != nil {
				return nil, err
			}
			sl.sub = sub
		}
		return sl, nil
	}
	sl.kind = keySlot
	switch t.Kind() {
	case reflect.Slice:
		sl.multi, t = true, t.Elem()
	case reflect.Pointer:
		sl.optional, t = true, t.Elem()
	}
	sl.conv = converters[t]
	if sl.conv == nil {
		return nil, fmt.Errorf("type %s has no ZConfig datatype", f.Type)
	}
	if sl.hasDef {
		if _, err := sl.conv.parse(sl.def); err != nil {
			return nil, fmt.Errorf("bad default: %v", err)
		}
	}
	return sl, nil
}

// decode fills struct value rv from section s, adding problems to errs.
func (sch *schema) decode(s *Section, rv reflect.Value, errs *ErrorList) {
	var keyNames, sectionNames []string
	keys, sections := map[string]*slot{}, map[string]*slot{}
	var catchAll *slot
	for _, sl := range sch.slots {
		switch sl.kind {
		case keySlot:
			keys[sl.name] = sl
			keyNames = append(keyNames, sl.name)
		case sectionSlot:
			sections[sl.name] = sl
			sectionNames = append(sectionNames, sl.name)
		case catchAllSlot:
			catchAll = sl
		case nameSlot:
			rv.FieldByIndex(sl.index).SetString(s.Name)
		case sourceSlot:
			rv.FieldByIndex(sl.index).Set(reflect.ValueOf(s))
		}
	}

	first := map[string]*Key{}
	multi := map[string]reflect.Value{}
	for _, k := range s.Keys {
		sl := keys[k.Name]
		if sl == nil {
			msg := fmt.Sprintf("unknown key %s in %s", quote(k.Name), s.describe())
			if sug := Suggest(k.Name, keyNames); sug != "" {
				msg += fmt.Sprintf("; did you mean %s?", quote(sug))
			}
			errs.add(k.Pos, "%s", msg)
			continue
		}
		if f, seen := first[k.Name]; seen && !sl.multi {
			errs.add(k.Pos, "key %s is given more than once in %s (first at %d:%d); only multikeys may repeat", quote(k.Name), s.describe(), f.Pos.Line, f.Pos.Col)
			continue
		} else if !seen {
			first[k.Name] = k
		}
		val, err := sl.conv.parse(k.Value)
		if err != nil {
			errs.addCause(k.ValuePos, err, "invalid value for %s: %v", quote(k.Name), err)
			continue
		}
		if sl.multi {
			list, ok := multi[k.Name]
			if !ok {
				list = reflect.MakeSlice(rv.FieldByIndex(sl.index).Type(), 0, 1)
			}
			multi[k.Name] = reflect.Append(list, val)
			continue
		}
		sl.set(rv.FieldByIndex(sl.index), val)
	}
	for name, list := range multi {
		rv.FieldByIndex(keys[name].index).Set(list)
	}

	found := map[string]*Section{}
	var extra []*Section
	for _, sub := range s.Sections {
		sl := sections[sub.Type]
		if sl == nil {
			if catchAll != nil {
				extra = append(extra, sub)
				continue
			}
			msg := fmt.Sprintf("unknown section <%s> in %s", sub.Type, s.describe())
			if sug := Suggest(sub.Type, sectionNames); sug != "" {
				msg += fmt.Sprintf("; did you mean <%s>?", sug)
			}
			errs.add(sub.Pos, "%s", msg)
			continue
		}
		if f, seen := found[sub.Type]; seen && !sl.multi {
			errs.add(sub.Pos, "only one <%s> section is allowed in %s (first at %d:%d)", sub.Type, s.describe(), f.Pos.Line, f.Pos.Col)
			continue
		}
		found[sub.Type] = sub
		ptr := reflect.ValueOf(sub)
		if sl.sub != nil {
			ptr = reflect.New(sl.elem)
			sl.sub.decode(sub, ptr.Elem(), errs)
		}
		field := rv.FieldByIndex(sl.index)
		if sl.multi {
			field.Set(reflect.Append(field, ptr))
		} else {
			field.Set(ptr)
		}
	}
	if catchAll != nil && extra != nil {
		rv.FieldByIndex(catchAll.index).Set(reflect.ValueOf(extra))
	}

	for _, sl := range sch.slots {
		switch {
		case sl.kind == keySlot && first[sl.name] == nil:
			if sl.required {
				errs.add(s.Pos, "missing required key %s in %s", quote(sl.name), s.describe())
			} else if sl.hasDef {
				val, _ := sl.conv.parse(sl.def) // checked when the slot was made
				field := rv.FieldByIndex(sl.index)
				if sl.multi {
					field.Set(reflect.Append(reflect.MakeSlice(field.Type(), 0, 1), val))
				} else {
					sl.set(field, val)
				}
			}
		case sl.kind == sectionSlot && sl.required && found[sl.name] == nil:
			errs.add(s.Pos, "missing required section <%s> in %s", sl.name, s.describe())
		}
	}
}

// set stores a converted scalar in a scalar or pointer field.
func (sl *slot) set(field, val reflect.Value) {
	if sl.optional {
		p := reflect.New(val.Type())
		p.Elem().Set(val)
		val = p
	}
	field.Set(val)
}

// describe lists the slots of sch, names prefixed by prefix. outer holds
// the plans being described further out: a section of a type that contains
// itself is listed once, not expanded again.
func (sch *schema) describe(prefix string, outer []*schema) []KeyDoc {
	outer = append(outer, sch)
	var docs []KeyDoc
	for _, sl := range sch.slots {
		if sl.kind == nameSlot || sl.kind == sourceSlot {
			continue
		}
		d := KeyDoc{
			Name:     prefix + sl.name,
			Default:  sl.def,
			Doc:      sl.doc,
			Required: sl.required,
			Multi:    sl.multi,
			Section:  sl.kind != keySlot,
		}
		if sl.kind == keySlot {
			d.Type = sl.conv.typeName
		} else {
			d.Type = "section"
		}
		docs = append(docs, d)
		if sl.sub != nil && !slices.Contains(outer, sl.sub) {
			docs = append(docs, sl.sub.describe(prefix+sl.name+"/", outer)...)
		}
	}
	return docs
}
