package stack

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/sirupsen/logrus"
)

// Module describes one storage section type: what `zeoraid types` shows and
// how Build opens a section of that type. Builtins register theirs in init;
// plugin hosts register the types their plugins advertise.
type Module struct {
	// Type is the section type name, lower case (filestorage); the package
	// implementing it carries the same name.
	Type string
	// Aliases are other section type names that mean the same module.
	Aliases []string
	// Doc is a one-paragraph description for `zeoraid types`.
	Doc string
	// Options is a pointer to the zero value of the module's options struct,
	// whose fields carry zconfig tags. Build decodes each section into a
	// fresh copy. nil when the section has no keys.
	Options any
	// Children reports whether sections of this type contain storage
	// sections (a RAID does); they are built first and passed in Node.
	Children bool
	// NamedChildren requires every child section to have a unique name
	// (a RAID names its mirrors); otherwise unnamed children are allowed
	// and shown by their type in paths.
	NamedChildren bool
	// Open opens the storage for one section. opts is the decoded options
	// struct (a pointer of Options' type). Open must not keep ctx.
	Open func(ctx context.Context, n *Node, opts any) (Storage, error)
	// Check, when set, checks decoded options as an OptionsValidator
	// does, for options whose type cannot have methods (a plugin's, made
	// at run time). Build calls it for every section, in dry runs too; a
	// zconfig.ErrorList it returns keeps its positions.
	Check func(opts any, children int) error
}

// OptionsValidator is implemented by options structs that check what the
// decoder cannot: enumerations, ranges, relations between keys or with the
// number of child sections. Build calls it for every section, in dry runs
// too, so `zeoraid validate` reports such errors at the section's position.
type OptionsValidator interface {
	Validate(children int) error
}

// Node is what Open gets besides its options: where the node sits in the
// tree and what it may use.
type Node struct {
	// Path names the node in logs and errors: the mount name, then the
	// section name of each nested storage ("main/2").
	Path string
	// Name is the section's own name ("2"), or "" when unnamed.
	Name string
	// Type is the section type as written in the configuration.
	Type string
	// Children are the already-opened child storages, in configuration
	// order (only for modules with Children set).
	Children []Storage
	// ChildNames are the children's section names, parallel to Children.
	ChildNames []string
	// Log is the node's logger, carrying the node, type and storage fields.
	Log logrus.FieldLogger
	// Pool shares exclusive resources between the old and the new tree
	// during a reload.
	Pool *Pool
}

var (
	registryMu sync.RWMutex
	registry   = map[string]*Module{}
)

// Register adds a module under its type and aliases. It panics on a
// duplicate name or a malformed module: both are programming errors found
// at start-up.
func Register(m Module) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if m.Type == "" || m.Open == nil {
		panic("stack.Register: module needs Type and Open")
	}
	if m.Options != nil && reflect.TypeOf(m.Options).Kind() != reflect.Pointer {
		panic(fmt.Sprintf("stack.Register(%s): Options must be a pointer to a struct", m.Type))
	}
	mod := m
	for _, name := range append([]string{m.Type}, m.Aliases...) {
		if _, dup := registry[name]; dup {
			panic(fmt.Sprintf("stack.Register: section type %q registered twice", name))
		}
		registry[name] = &mod
	}
}

// Lookup returns the module registered for a section type or alias.
func Lookup(sectionType string) (*Module, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	m, ok := registry[sectionType]
	return m, ok
}

// Modules returns every registered module once, sorted by type.
func Modules() []*Module {
	registryMu.RLock()
	defer registryMu.RUnlock()
	seen := map[*Module]bool{}
	var out []*Module
	for _, m := range registry {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// TypeNames returns every registered section type and alias, sorted; used
// for "did you mean" suggestions.
func TypeNames() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewOptions returns a fresh options struct pointer for m, or nil.
func (m *Module) NewOptions() any {
	if m.Options == nil {
		return nil
	}
	return reflect.New(reflect.TypeOf(m.Options).Elem()).Interface()
}
