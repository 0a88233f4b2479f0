package syslog

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/testkit/fixture"
)

const testToken = "9c3a6b1e-8f2d-4e7a-b5c4-1d2e3f4a5b6c" // a UUID, as SolarWinds issues them

// parseStrict parses a message with go-syslog's strict parser, taught the one exception the
// sink makes to RFC 5424: a first SD element [<token>@41058] whose SD-ID is longer than 32
// bytes, which it checks and takes out before parsing. It returns the token, if any.
func parseStrict(msg []byte) (*rfc5424.SyslogMessage, string, error) {
	// The SD starts after the six header fields.
	at := 0
	for i := 0; i < 6; i++ {
		n := bytes.IndexByte(msg[at:], ' ')
		if n < 0 {
			break
		}
		at += n + 1
	}
	var token string
	if rest := msg[at:]; bytes.HasPrefix(rest, []byte("[")) {
		end := bytes.IndexByte(rest, ']')
		id := rest[1:max(end, 1)]
		if t, ok := bytes.CutSuffix(id, []byte("@41058")); ok && end > 0 && len(id) > maxSDName {
			if !sdNameChars(string(t)) || bytes.ContainsAny(id, " =\"") {
				return nil, "", errors.New("token element is not an SD-ID")
			}
			token = string(t)
			stripped := append([]byte(nil), msg[:at]...)
			if after := rest[end+1:]; len(after) == 0 || after[0] == ' ' {
				stripped = append(stripped, '-')
				stripped = append(stripped, after...)
			} else {
				stripped = append(stripped, after...)
			}
			msg = stripped
		}
	}
	m, err := rfc5424.NewParser().Parse(msg)
	if err != nil {
		return nil, token, err
	}
	return m.(*rfc5424.SyslogMessage), token, nil
}

// The token goes first, in an element of its own, whatever else the message carries, and
// stays when the other structured data is dropped to make room.
func TestTokenElement(t *testing.T) {
	for _, c := range []struct {
		keys core.MapGetter
		body map[string]any
		sd   string // the other element that must (or, empty, must not) be there
	}{
		{core.MapGetter{"token": testToken, "sd_params": "line=$log"}, map[string]any{"log": "hello"}, "k8s@32473"},
		{core.MapGetter{"token": testToken, "sd_params": ""}, map[string]any{"log": "hello"}, ""},
		{core.MapGetter{"token": testToken, "sd_params": "big=$big", "max_size": "1024"}, map[string]any{"log": "hello", "big": strings.Repeat("x", 900)}, ""},
	} {
		f := newFormatter(t, c.keys)
		got := frame(t, f, "kube.var.log.containers.api-1_blog_app-"+strings.Repeat("ab", 32)+".log", c.body)
		if !strings.Contains(got, " ["+testToken+"@41058]") {
			t.Fatalf("%v: no token element first: %q", c.keys, got)
		}
		m, token, err := parseStrict([]byte(strings.TrimSuffix(got, "\n")))
		if err != nil || token != testToken {
			t.Fatalf("%v: %q: token %q, %v", c.keys, got, token, err)
		}
		has := false
		if m.StructuredData != nil {
			_, has = (*m.StructuredData)[c.sd]
		}
		if (c.sd != "") != has || *m.Message != "hello" {
			t.Errorf("%v: %q: element %q there %v, message %q", c.keys, got, c.sd, has, *m.Message)
		}
	}
}

// The token is a credential: an invalid one fails Init naming the key, not the value, and no
// log line, error or setting shown holds it.
func TestTokenNeverShown(t *testing.T) {
	for _, bad := range []string{"has space", "a]b", strings.Repeat("t", 200)} {
		p := core.NewParser(core.MapGetter{"address": "h:1", "token": bad})
		Parse(p)
		if err := p.Deferred(); err == nil || !strings.Contains(err.Error(), `config key "token"`) || strings.Contains(err.Error(), bad) {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	var logged bytes.Buffer
	keys := core.MapGetter{"address": "tcp://127.0.0.1:1", "token": testToken, "dial_timeout": "100ms"}
	s, err := fixture.Build(t, Kind, keys, &logged)
	if err != nil {
		t.Fatal(err)
	}
	res := s.Deliver(context.Background(), chunkBatch(t, "kube-merged", "chunk-002.msgpack"))
	p := core.NewParser(keys)
	Parse(p)
	if shown := p.Effective() + logged.String() + res.Err.Error(); strings.Contains(shown, testToken) || !strings.Contains(p.Effective(), "token") {
		t.Errorf("token shown, or the key not listed:\n%s", shown)
	}
}
