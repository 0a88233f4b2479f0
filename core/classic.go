package core

import (
	"bufio"
	"bytes"
	"fmt"

	"regexp"
	"strings"
)

// Section is one [SECTION] of a Fluent Bit configuration in its classic format.
type Section struct {
	Name string // upper case: SERVICE, INPUT, FILTER, OUTPUT
	Keys MapGetter
	Line int // where its header is
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
			out = append(out, Section{Name: strings.ToUpper(line[1 : len(line)-1]), Keys: MapGetter{}, Line: n})
		case len(out) == 0:
			return nil, fmt.Errorf("line %d outside a section: %q", n, line)
		default:
			k, v, _ := strings.Cut(line, " ")
			s := &out[len(out)-1]
			if _, dup := s.Keys[k]; dup {
				return nil, fmt.Errorf("line %d: %s repeated in [%s]", n, k, s.Name)
			}
			s.Keys[k] = strings.TrimSpace(v)
		}
	}
	return out, sc.Err()
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// CheckClassic checks every trailstack output of a configuration as Init would, offline:
// the keys' values, and keys the sink does not read. ${VAR} is replaced from lookup, as
// Fluent Bit does; a destination or credential from an unset variable is not checked here
// (at start it leaves that output not started, and says so).
func CheckClassic(data []byte, kinds []Kind, lookup func(string) (string, bool)) []error {
	secs, err := ReadClassic(data)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, s := range secs {
		if s.Name != "OUTPUT" || !strings.EqualFold(s.Keys.Get("Name"), "trailstack") {
			continue
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
		if err != nil {
			errs = append(errs, fmt.Errorf("[OUTPUT] at line %d: %w", s.Line, err))
		}
	}
	return errs
}
