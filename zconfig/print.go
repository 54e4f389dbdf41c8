package zconfig

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Print writes s in canonical form: two-space indentation, in each section
// first its %import lines, then its keys, then its subsections; `$` in
// values doubled; empty sections as `<type name/>`; top-level sections
// separated by a blank line. Parsing the output gives back the same tree
// (up to positions). Given the root it prints the file's contents; given
// any other section it prints that section with its tags. A tree that could
// not have come from Parse (say, a key with a blank in its name) is refused
// with an error before anything is written.
func Print(w io.Writer, s *Section) error {
	if err := checkPrintable(s, s.Type == ""); err != nil {
		return err
	}
	var b strings.Builder
	if s.Type == "" {
		printBody(&b, s, "", true)
	} else {
		printSection(&b, s, "")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

var (
	printIdentRE = regexp.MustCompile(`^` + identRE + `$`)
	printKeyRE   = regexp.MustCompile(`^[^` + space + `<%#()][^` + space + `()]*$`)
	printValueRE = regexp.MustCompile(`^(?:` + valueRE + `)?$`)
)

// checkPrintable reports the first node of s that Print could not write so
// that it parses back the same.
func checkPrintable(s *Section, root bool) error {
	if !root {
		if !printIdentRE.MatchString(s.Type) || s.Type != strings.ToLower(s.Type) {
			return fmt.Errorf("zconfig: cannot print section type %q", s.Type)
		}
		if s.Name != "" && (!printIdentRE.MatchString(s.Name) || s.Name != strings.ToLower(s.Name)) {
			return fmt.Errorf("zconfig: cannot print section name %q of <%s>", s.Name, s.Type)
		}
	}
	for _, imp := range s.Imports {
		if !packageNameRE.MatchString(imp.Package) {
			return fmt.Errorf("zconfig: cannot print %%import of %q", imp.Package)
		}
	}
	for _, k := range s.Keys {
		if !utf8.ValidString(k.Name) || !printKeyRE.MatchString(k.Name) || k.Name != strings.ToLower(k.Name) {
			return fmt.Errorf("zconfig: cannot print key %q", k.Name)
		}
		if !utf8.ValidString(k.Value) || strings.ContainsAny(k.Value, "\r\n") || !printValueRE.MatchString(k.Value) {
			return fmt.Errorf("zconfig: cannot print value %q of key %q", k.Value, k.Name)
		}
	}
	for _, sub := range s.Sections {
		if err := checkPrintable(sub, false); err != nil {
			return err
		}
	}
	return nil
}

// printSection writes s with its tags at the given indentation.
func printSection(b *strings.Builder, s *Section, indent string) {
	header := s.Type
	if s.Name != "" {
		header += " " + s.Name
	}
	if len(s.Imports) == 0 && len(s.Keys) == 0 && len(s.Sections) == 0 {
		fmt.Fprintf(b, "%s<%s/>\n", indent, header)
		return
	}
	fmt.Fprintf(b, "%s<%s>\n", indent, header)
	printBody(b, s, indent+"  ", false)
	fmt.Fprintf(b, "%s</%s>\n", indent, s.Type)
}

// printBody writes the contents of s.
func printBody(b *strings.Builder, s *Section, indent string, topLevel bool) {
	for _, imp := range s.Imports {
		fmt.Fprintf(b, "%s%%import %s\n", indent, imp.Package)
	}
	for _, k := range s.Keys {
		if k.Value == "" {
			fmt.Fprintf(b, "%s%s\n", indent, k.Name)
		} else {
			fmt.Fprintf(b, "%s%s %s\n", indent, k.Name, strings.ReplaceAll(k.Value, "$", "$$"))
		}
	}
	for i, sub := range s.Sections {
		if topLevel && (i > 0 || len(s.Keys) > 0 || len(s.Imports) > 0) {
			b.WriteString("\n")
		}
		printSection(b, sub, indent)
	}
}
