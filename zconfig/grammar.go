package zconfig

import (
	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
)

// ZConfig is line-oriented: every line is a comment, a section start or end
// tag, a directive or a key. The grammar below describes one line; the
// parser feeds it line by line, which lets it report a broken line and go on
// with the next one, and builds the section tree itself.

// Characters that separate words on a line (line breaks never reach the
// lexer: lines are split first). The regular expressions below embed them
// in character classes as they are.
const (
	space    = " \t\f\v"
	spaceSet = `[` + space + `]`
	// A section type or name: no blanks, parentheses or angle brackets, and
	// no slash at either end (a trailing slash marks an empty section).
	identRE = `[^` + space + `()<>/]+(?:/+[^` + space + `()<>/]+)*`
	// A value or directive argument: the rest of the line, trimmed.
	valueRE = `[^` + space + `](?:.*[^` + space + `])?`
)

var lineLexer = lexer.MustStateful(lexer.Rules{
	"Root": {
		{Name: "Space", Pattern: spaceSet + `+`},
		{Name: "Comment", Pattern: `#.*`},
		{Name: "EndTag", Pattern: `</` + identRE, Action: lexer.Push("Tag")},
		{Name: "StartTag", Pattern: `<` + identRE, Action: lexer.Push("Tag")},
		{Name: "Directive", Pattern: `%[^` + space + `]*`, Action: lexer.Push("Value")},
		{Name: "Key", Pattern: `[^` + space + `<%#][^` + space + `]*`, Action: lexer.Push("Value")},
	},
	"Tag": {
		{Name: "Space", Pattern: spaceSet + `+`},
		{Name: "Ident", Pattern: identRE},
		{Name: "Slash", Pattern: `/`},
		{Name: "Close", Pattern: `>`, Action: lexer.Pop()},
	},
	"Value": {
		{Name: "Space", Pattern: spaceSet + `+`},
		{Name: "Value", Pattern: valueRE},
	},
})

// line is one non-blank line of a configuration file.
type line struct {
	Comment   *string    `parser:"@Comment"`
	Start     *startTag  `parser:"| @@"`
	End       *endTag    `parser:"| @@"`
	Directive *directive `parser:"| @@"`
	Key       *keyLine   `parser:"| @@"`
}

// startTag is `<type [name]>` or the empty section `<type [name]/>`.
type startTag struct {
	Pos   lexer.Position
	Type  string `parser:"@StartTag"`
	Name  *word  `parser:"@@?"`
	Empty bool   `parser:"@Slash? Close"`
}

// endTag is `</type>`.
type endTag struct {
	Pos  lexer.Position
	Type string `parser:"@EndTag Close"`
}

// directive is `%name [argument]`.
type directive struct {
	Pos  lexer.Position
	Name string `parser:"@Directive"`
	Arg  *value `parser:"@@?"`
}

// keyLine is `key [value]`.
type keyLine struct {
	Pos   lexer.Position
	Name  string `parser:"@Key"`
	Value *value `parser:"@@?"`
}

// word is a section name with its position.
type word struct {
	Pos  lexer.Position
	Text string `parser:"@Ident"`
}

// value is the rest of a line with its position.
type value struct {
	Pos  lexer.Position
	Text string `parser:"@Value"`
}

var lineParser = participle.MustBuild[line](
	participle.Lexer(lineLexer),
	participle.Elide("Space"),
)
