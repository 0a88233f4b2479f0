package core

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Section is one section of a Fluent Bit configuration ([OUTPUT] in the classic format, an
// element of pipeline.outputs in YAML), as the engine hands its keys to a plugin.
type Section struct {
	Name     string // upper case: SERVICE, INPUT, FILTER, OUTPUT, PARSER, PLUGINS
	Keys     MapGetter
	Line     int            // where it starts
	KeyLines map[string]int // where each key is, by its lower-cased name
	// Keys whose value is not a scalar (YAML): Fluent Bit hands a Go plugin a list as the
	// same key once per element, and the plugin reads only the first.
	NotScalar []string
}

// Set adds a key; a repeated one (case-insensitively) is an error, as it is ambiguous in
// Fluent Bit.
func (s *Section) Set(key, value string, line int) error {
	lk := strings.ToLower(key)
	if _, dup := s.KeyLines[lk]; dup {
		return fmt.Errorf("line %d: %s repeated in %s (keys are case-insensitive)", line, key, s.Name)
	}
	s.Keys[key] = value
	s.KeyLines[lk] = line
	return nil
}

// NewSection starts a section at line.
func NewSection(name string, line int) Section {
	return Section{Name: strings.ToUpper(name), Keys: MapGetter{}, Line: line, KeyLines: map[string]int{}}
}

// ReadClassic reads Fluent Bit's classic format: [SECTION] headers, "key value" lines,
// comments. A repeated key is an error, as it is ambiguous in Fluent Bit.
func ReadClassic(data []byte) ([]Section, error) {
	var out []Section
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "@"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			out = append(out, NewSection(line[1:len(line)-1], n))
		case len(out) == 0:
			return nil, fmt.Errorf("line %d outside a section: %q", n, line)
		default:
			k, v, _ := strings.Cut(line, " ")
			if err := out[len(out)-1].Set(k, strings.TrimSpace(v), n); err != nil {
				return nil, err
			}
		}
	}
	return out, sc.Err()
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// CheckSections checks every trailstack output of a configuration as Init would, offline:
// the keys' values, keys the sink does not read, and values that are not scalars. Each
// problem names file, line and key. ${VAR} is replaced from lookup, as Fluent Bit does; a
// destination or credential from an unset variable is not checked here (at start it leaves
// that output not started, and says so).
func CheckSections(file string, secs []Section, kinds []Kind, lookup func(string) (string, bool)) []error {
	var errs []error
	for _, s := range secs {
		if s.Name != "OUTPUT" || !strings.EqualFold(s.Keys.Get("Name"), "trailstack") {
			continue
		}
		name := "trailstack"
		if a := s.Keys.Get("Alias"); a != "" {
			name = a
		}
		at := func(key string, err error) {
			line := s.Line
			if l, ok := s.KeyLines[strings.ToLower(key)]; ok {
				line = l
			}
			errs = append(errs, fmt.Errorf("%s:%d: output %s: %w", file, line, name, err))
		}
		for _, k := range s.NotScalar {
			at(k, fmt.Errorf("config key %q: not a single value (a Go plugin reads only the first of a list)", k))
		}
		keys, unset := MapGetter{}, false
		for k, v := range s.Keys {
			keys[k] = envRef.ReplaceAllStringFunc(v, func(ref string) string {
				val, ok := lookup(envRef.FindStringSubmatch(ref)[1])
				unset = unset || !ok
				return val
			})
		}
		err, deferred := check(keys, kinds)
		if err == nil && !unset {
			err = deferred // every variable is set here: its value is checked too
		}
		var bad *BadKeys
		switch {
		case err == nil:
		case errors.As(err, &bad):
			at(bad.Keys[0], err)
		default:
			at("", err)
		}
	}
	return errs
}
