package core

import (
	"strings"
	"testing"
	"time"
)

func TestParserReadsTypedValues(t *testing.T) {
	p := NewParser(MapGetter{
		"Mode": "TLS", "Verify": "off", "count": "7", "wait": "1500ms", "secs": "3",
		"max": "100k", "big": "2MiB", "token": "hunter2",
	})
	if got := p.Enum("mode", "tcp", "tcp", "tls", "udp"); got != "tls" {
		t.Errorf("Enum = %q", got)
	}
	if p.Bool("verify", true) {
		t.Error("Bool(off) = true")
	}
	if !p.Bool("unset", true) {
		t.Error("Bool default lost")
	}
	if got := p.Int("count", 1, 0, 10); got != 7 {
		t.Errorf("Int = %d", got)
	}
	if got := p.Duration("wait", time.Second, 0, time.Minute); got != 1500*time.Millisecond {
		t.Errorf("Duration = %v", got)
	}
	if got := p.Duration("secs", time.Second, 0, time.Minute); got != 3*time.Second {
		t.Errorf("Duration(plain seconds) = %v", got)
	}
	if got := p.Size("max", 0, 0, 1<<30); got != 100<<10 {
		t.Errorf("Size(100k) = %d", got)
	}
	if got := p.Size("big", 0, 0, 1<<30); got != 2<<20 {
		t.Errorf("Size(2MiB) = %d", got)
	}
	if got := p.Secret("token", ""); got != "hunter2" {
		t.Errorf("Secret = %q", got)
	}
	if p.Err() != nil {
		t.Fatal(p.Err())
	}
	eff := p.Effective()
	if strings.Contains(eff, "hunter2") || !strings.Contains(eff, `token="<redacted>"`) {
		t.Errorf("Effective leaks or drops the secret: %s", eff)
	}
	if !strings.Contains(eff, `mode="tls"`) || !strings.Contains(eff, `max="102400"`) {
		t.Errorf("Effective = %s", eff)
	}
	if keys := p.Keys(); len(keys) != 9 || keys[0] != "big" {
		t.Errorf("Keys = %v", keys)
	}
}

func TestParserNamesTheKeyAndValue(t *testing.T) {
	for _, c := range []struct {
		read func(*Parser)
		want string
	}{
		{func(p *Parser) { p.Enum("k", "a", "a", "b") }, `config key "k": invalid value "c": want one of a, b`},
		{func(p *Parser) { p.Bool("k", false) }, `config key "k": invalid value "c": want on or off`},
		{func(p *Parser) { p.Int("k", 0, 0, 9) }, `config key "k": invalid value "c"`},
		{func(p *Parser) { p.Duration("k", 0, 0, time.Hour) }, `config key "k": invalid value "c": want a duration`},
		{func(p *Parser) { p.Size("k", 0, 0, 10) }, `config key "k": invalid value "c": want a size`},
	} {
		p := NewParser(MapGetter{"k": "c"})
		c.read(p)
		if p.Err() == nil || !strings.HasPrefix(p.Err().Error(), c.want) {
			t.Errorf("error %v, want %q", p.Err(), c.want)
		}
	}
	// Out of range is as wrong as unreadable; the first error is the one kept.
	p := NewParser(MapGetter{"n": "11", "d": "2h", "s": "1G"})
	p.Int("n", 0, 0, 10)
	p.Duration("d", 0, 0, time.Hour)
	p.Size("s", 0, 0, 1<<20)
	if p.Err() == nil || !strings.Contains(p.Err().Error(), `"n"`) {
		t.Errorf("error %v, want the first key, n", p.Err())
	}
}

func TestReservedKeys(t *testing.T) {
	for _, k := range []string{"host", "Port", "tls", "tls.verify", "workers", "match", "storage.type", "retry_limit", "alias", "net.keepalive"} {
		if !IsReserved(k) {
			t.Errorf("%s is not reserved", k)
		}
	}
	for _, k := range []string{"sink", "address", "hostname", "tls_verify", "shutdown_timeout"} {
		if IsReserved(k) {
			t.Errorf("%s is reserved", k)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("reading a reserved key did not panic")
		}
	}()
	NewParser(MapGetter{}).String("host", "")
}

func TestCheck(t *testing.T) {
	if err := Check(MapGetter{"Name": "trailstack", "Match": "*", "Workers": "2", "sink": "null", "shutdown_timeout": "3s"}, []Kind{Null}); err != nil {
		t.Fatal(err)
	}
	for keys, want := range map[*MapGetter]string{
		{"sink": "null", "adress": "x"}:           "keys that sink null does not read: adress",
		{"sink": "null", "shutdown_timeout": "x"}: `config key "shutdown_timeout"`,
		{"match": "*"}: `config key "sink" is required: one of null`,
	} {
		if err := Check(*keys, []Kind{Null}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", *keys, err, want)
		}
	}
}

// The offline check of a whole configuration: each trailstack output checked as Init would,
// other plugins' sections left alone, ${VAR} from the given environment, each problem at the
// line of its key.
func TestCheckSections(t *testing.T) {
	conf := []byte(`[SERVICE]
    Flush 1
[OUTPUT]
    Name  stdout
    Match *
[OUTPUT]
    Name     trailstack
    Match    *
    sink     null
    shutdown_timeout ${WAIT}
[OUTPUT]
    Name     trailstack
    Alias    second
    sink     null
    shutdown_timout 3s
`)
	env := func(k string) (string, bool) { return map[string]string{"WAIT": "soon"}[k], k == "WAIT" }
	secs, err := ReadClassic(conf)
	if err != nil {
		t.Fatal(err)
	}
	errs := CheckSections("f.conf", secs, []Kind{Null}, env)
	if len(errs) != 2 || !strings.HasPrefix(errs[0].Error(), `f.conf:10: output trailstack: config key "shutdown_timeout": invalid value "soon"`) ||
		errs[1].Error() != "f.conf:15: output second: keys that sink null does not read: shutdown_timout" {
		t.Fatalf("%v", errs)
	}
	for _, dup := range []string{"[OUTPUT]\n    Name a\n    Name b\n", "[OUTPUT]\n    Name a\n    name b\n"} {
		if _, err := ReadClassic([]byte(dup)); err == nil {
			t.Errorf("a repeated key passed: %q", dup)
		}
	}
}
