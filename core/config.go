// Package core is what every trailstack output instance shares, whatever its destination:
// strict configuration, the Sink interface the destinations implement, and the Instance that
// turns one Fluent Bit flush into one delivery with a definite answer.
package core

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Getter reads one configuration key of an instance; "" means unset. In the plugin it is
// Fluent Bit's output_get_property; in tests, a map.
type Getter interface {
	Get(key string) string
}

// MapGetter is a Getter over a map, with keys matched case-insensitively as Fluent Bit does.
type MapGetter map[string]string

// Get implements Getter.
func (m MapGetter) Get(key string) string {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// reservedKeys are the keys that Fluent Bit takes for itself on every output: a plugin that
// used one as its own would never see it (fluent/fluent-bit-go README, flb_output.c).
var reservedKeys = []string{
	"alias", "host", "port", "ipv6", "log_level", "log_suppress_interval", "match",
	"match_regex", "mem_buf_limit", "name", "net.", "retry_limit", "routable", "storage.",
	"tag", "threaded", "tls", "tls.", "workers",
}

// IsReserved reports whether Fluent Bit keeps key for itself.
func IsReserved(key string) bool {
	key = strings.ToLower(key)
	for _, r := range reservedKeys {
		if key == r || (strings.HasSuffix(r, ".") && strings.HasPrefix(key, r)) {
			return true
		}
	}
	return false
}

// Parser reads an instance's keys strictly: the first value that does not parse is kept as
// the error, naming the key and the value, and every key read is remembered with its
// effective value so that Init can log the configuration once.
type Parser struct {
	get      Getter
	env      func(string) (string, bool)
	err      error
	settings []setting

	// Keys a deployment sets from the environment or a Secret (a destination, a
	// credential): a problem with one is kept apart (Deferred), and leaves the output not
	// started rather than failing Init, which would stop Fluent Bit and every other output.
	fromEnv  map[string]bool
	deferred error
}

type setting struct {
	key, value string
	secret     bool
	shown      string // what Effective prints instead of value, when set
}

// NewParser reads keys through get.
func NewParser(get Getter) *Parser { return &Parser{get: get, env: os.LookupEnv} }

// LookupEnv reads an environment variable as the instance's templates see it.
func (p *Parser) LookupEnv(name string) (string, bool) { return p.env(name) }

// Err is the first key that failed to parse, if any.
func (p *Parser) Err() error { return p.err }

// Fail records a problem with key that the typed readers cannot see, such as two keys that
// contradict each other.
func (p *Parser) Fail(key, format string, args ...any) { p.fail(key, KeyError(key, format, args...)) }

func (p *Parser) fail(key string, err error) {
	switch {
	case p.fromEnv[strings.ToLower(key)]:
		if p.deferred == nil {
			p.deferred = err
		}
	case p.err == nil:
		p.err = err
	}
}

// FromEnv names keys that a deployment usually sets from the environment or a Secret.
func (p *Parser) FromEnv(keys ...string) {
	if p.fromEnv == nil {
		p.fromEnv = map[string]bool{}
	}
	for _, k := range keys {
		p.fromEnv[strings.ToLower(k)] = true
	}
}

// Deferred is the first problem with a FromEnv key, if any.
func (p *Parser) Deferred() error { return p.deferred }

func (p *Parser) raw(key string) string {
	if IsReserved(key) {
		// A programming error, caught by the tests that read every key.
		panic("trailstack uses a key that Fluent Bit reserves: " + key)
	}
	return strings.TrimSpace(p.get.Get(key))
}

func (p *Parser) bad(key, value, want string) {
	p.fail(key, &BadKeys{Keys: []string{key}, Err: fmt.Errorf("config key %q: invalid value %q: want %s", key, value, want)})
}

func (p *Parser) note(key, value string, secret bool) {
	p.settings = append(p.settings, setting{key: key, value: value, secret: secret})
}

// Shown reads a free-form value that is logged only as show renders it (a destination
// whose port is a credential: the host may be shown, the port not).
func (p *Parser) Shown(key, def string, show func(string) string) string {
	v := p.String(key, def)
	p.settings[len(p.settings)-1].shown = show(v)
	return v
}

// String reads a free-form value.
func (p *Parser) String(key, def string) string { return p.text(key, def, false) }

// Secret reads a value that is never logged.
func (p *Parser) Secret(key, def string) string { return p.text(key, def, true) }

func (p *Parser) text(key, def string, secret bool) string {
	v := p.raw(key)
	if v == "" {
		v = def
	}
	p.note(key, v, secret)
	return v
}

// Enum reads one of allowed, case-insensitively, and returns it as spelled in allowed.
func (p *Parser) Enum(key, def string, allowed ...string) string {
	v := p.raw(key)
	if v == "" {
		v = def
	}
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			p.note(key, a, false)
			return a
		}
	}
	p.bad(key, v, "one of "+strings.Join(allowed, ", "))
	return def
}

// Bool reads on/off, true/false, yes/no or 1/0, as Fluent Bit does.
func (p *Parser) Bool(key string, def bool) bool {
	v := p.raw(key)
	var b bool
	switch strings.ToLower(v) {
	case "":
		b = def
	case "on", "true", "yes", "1":
		b = true
	case "off", "false", "no", "0":
		b = false
	default:
		p.bad(key, v, "on or off")
		return def
	}
	p.note(key, strconv.FormatBool(b), false)
	return b
}

// Int reads a whole number within [min, max].
func (p *Parser) Int(key string, def, min, max int) int {
	v := p.raw(key)
	n := def
	if v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < min || n > max {
			p.bad(key, v, fmt.Sprintf("a whole number from %d to %d", min, max))
			return def
		}
	}
	p.note(key, strconv.Itoa(n), false)
	return n
}

// Duration reads a Go duration ("500ms", "1m30s") or a whole number of seconds, as
// Fluent Bit writes its own time keys. It must lie within [min, max].
func (p *Parser) Duration(key string, def, min, max time.Duration) time.Duration {
	v := p.raw(key)
	d := def
	if v != "" {
		var err error
		if s, e := strconv.Atoi(v); e == nil {
			d = time.Duration(s) * time.Second
		} else if d, err = time.ParseDuration(v); err != nil {
			p.bad(key, v, "a duration such as 5s or 500ms")
			return def
		}
		if d < min || d > max {
			p.bad(key, v, fmt.Sprintf("a duration from %v to %v", min, max))
			return def
		}
	}
	p.note(key, d.String(), false)
	return d
}

// Size reads a byte count: a number with an optional K, M or G suffix (KB/KiB and so on),
// each 1024 times the last, as Fluent Bit's own size keys. It must lie within [min, max].
func (p *Parser) Size(key string, def, min, max int64) int64 {
	v := p.raw(key)
	n := def
	if v != "" {
		var ok bool
		if n, ok = ParseSize(v); !ok || n < min || n > max {
			p.bad(key, v, fmt.Sprintf("a size from %d to %d bytes (K, M, G suffixes allowed)", min, max))
			return def
		}
	}
	p.note(key, strconv.FormatInt(n, 10), false)
	return n
}

// ParseSize reads a size as Fluent Bit writes them: 32K, 2M, 1G, 512KiB, 10MB, 100.
func ParseSize(v string) (int64, bool) {
	u := strings.ToUpper(v)
	mult := int64(1)
	for _, s := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(u, s.suffix) {
			u, mult = strings.TrimSpace(strings.TrimSuffix(u, s.suffix)), s.mult
			break
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, false
	}
	return n * mult, true
}

// Keys lists the keys read so far, sorted.
func (p *Parser) Keys() []string {
	keys := make([]string, 0, len(p.settings))
	for _, s := range p.settings {
		keys = append(keys, s.key)
	}
	sort.Strings(keys)
	return keys
}

// Effective renders the configuration as read, secrets redacted, for the one Init log line.
func (p *Parser) Effective() string {
	var sb strings.Builder
	for i, s := range p.settings {
		if i > 0 {
			sb.WriteByte(' ')
		}
		v := s.value
		if s.secret && v != "" {
			v = "<redacted>"
		} else if s.shown != "" {
			v = s.shown
		}
		fmt.Fprintf(&sb, "%s=%q", s.key, v)
	}
	return sb.String()
}
