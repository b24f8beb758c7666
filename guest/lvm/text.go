package lvm

import (
	"strconv"
	"strings"
)

// The LVM2 text metadata format ("Text Format Volume Group", version 1):
//
//	file    = { item }
//	item    = ident "=" value | ident "{" { item } "}"
//	value   = string | number | "[" [ scalar { "," scalar } ] "]"
//
// with "#" comments to the end of a line. The parser is a bounded
// recursive descent: nesting depth, item count and text size are limited,
// so hostile metadata costs at most a few times its own size.

const (
	maxDepth = 32
	maxItems = 1 << 20
)

// value is a parsed metadata value: a string, a number, a list of
// scalars, or a section of named items (kept in order).
type value struct {
	str     string
	num     int64
	isNum   bool
	isStr   bool
	list    []value
	isList  bool
	section *section
}

type item struct {
	name string
	val  value
}

type section struct{ items []item }

// get returns the first item named name.
func (s *section) get(name string) (value, bool) {
	for _, it := range s.items {
		if it.name == name {
			return it.val, true
		}
	}
	return value{}, false
}

type parser struct {
	s     string
	pos   int
	items int
}

func parseText(text []byte) (*section, error) {
	if len(text) > maxMetadata {
		return nil, malformed("metadata text of %d bytes", len(text))
	}
	p := &parser{s: string(text)}
	sec, err := p.items_(0, false)
	if err != nil {
		return nil, err
	}
	return sec, nil
}

func (p *parser) errf(format string, args ...any) error {
	line := 1 + strings.Count(p.s[:p.pos], "\n")
	return malformed("metadata line %d: "+format, append([]any{line}, args...)...)
}

func (p *parser) skip() {
	for p.pos < len(p.s) {
		switch c := p.s[p.pos]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.pos++
		case c == '#':
			for p.pos < len(p.s) && p.s[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func identChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.+-/", c) >= 0
}

// items_ parses items until "}" (inner) or the end of the text (top).
func (p *parser) items_(depth int, inner bool) (*section, error) {
	if depth > maxDepth {
		return nil, p.errf("sections nested deeper than %d", maxDepth)
	}
	sec := &section{}
	for {
		p.skip()
		if p.pos == len(p.s) {
			if inner {
				return nil, p.errf("unterminated section")
			}
			return sec, nil
		}
		if p.s[p.pos] == '}' {
			if !inner {
				return nil, p.errf("unexpected '}'")
			}
			p.pos++
			return sec, nil
		}
		start := p.pos
		for p.pos < len(p.s) && identChar(p.s[p.pos]) {
			p.pos++
		}
		if p.pos == start {
			return nil, p.errf("expected a name, found %q", p.s[p.pos])
		}
		name := p.s[start:p.pos]
		if p.items++; p.items > maxItems {
			return nil, p.errf("more than %d items", maxItems)
		}
		p.skip()
		if p.pos == len(p.s) {
			return nil, p.errf("%s: unexpected end", name)
		}
		switch p.s[p.pos] {
		case '{':
			p.pos++
			sub, err := p.items_(depth+1, true)
			if err != nil {
				return nil, err
			}
			sec.items = append(sec.items, item{name, value{section: sub}})
		case '=':
			p.pos++
			v, err := p.value(true)
			if err != nil {
				return nil, err
			}
			sec.items = append(sec.items, item{name, v})
		default:
			return nil, p.errf("%s: expected '=' or '{'", name)
		}
	}
}

func (p *parser) value(listOK bool) (value, error) {
	p.skip()
	if p.pos == len(p.s) {
		return value{}, p.errf("missing value")
	}
	switch c := p.s[p.pos]; {
	case c == '"':
		return p.str()
	case c == '[' && listOK:
		p.pos++
		v := value{isList: true}
		for {
			p.skip()
			if p.pos < len(p.s) && p.s[p.pos] == ']' {
				p.pos++
				return v, nil
			}
			if len(v.list) > 0 {
				if p.pos == len(p.s) || p.s[p.pos] != ',' {
					return value{}, p.errf("expected ',' or ']' in a list")
				}
				p.pos++
			}
			e, err := p.value(false)
			if err != nil {
				return value{}, err
			}
			if p.items++; p.items > maxItems {
				return value{}, p.errf("more than %d items", maxItems)
			}
			v.list = append(v.list, e)
		}
	case c == '-' || c >= '0' && c <= '9':
		start := p.pos
		p.pos++
		for p.pos < len(p.s) && (p.s[p.pos] >= '0' && p.s[p.pos] <= '9' || p.s[p.pos] == '.') {
			p.pos++
		}
		lit := p.s[start:p.pos]
		if strings.Contains(lit, ".") {
			f, err := strconv.ParseFloat(lit, 64)
			if err != nil {
				return value{}, p.errf("bad number %q", lit)
			}
			return value{str: lit, num: int64(f)}, nil // floats are kept but never used as numbers
		}
		n, err := strconv.ParseInt(lit, 10, 64)
		if err != nil {
			return value{}, p.errf("bad number %q", lit)
		}
		return value{num: n, isNum: true}, nil
	default:
		return value{}, p.errf("unexpected %q", c)
	}
}

func (p *parser) str() (value, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		p.pos++
		switch c {
		case '"':
			return value{str: b.String(), isStr: true}, nil
		case '\\':
			if p.pos == len(p.s) {
				return value{}, p.errf("unterminated string")
			}
			b.WriteByte(p.s[p.pos])
			p.pos++
		default:
			b.WriteByte(c)
		}
	}
	return value{}, p.errf("unterminated string")
}
