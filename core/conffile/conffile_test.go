package conffile

import (
	"strings"
	"testing"

	"github.com/trailstack/trailstack/core"
)

const yamlConf = `env:
  WAIT: 3s
service:
  flush: 1
plugins:
  - /fluent-bit/plugins/out_trailstack.so
parsers:
  - name: json
    format: json
pipeline:
  inputs:
    - name: tail
      path:
        - /a/*.log
        - /b/*.log
  outputs:
    - name: stdout
      match: '*'
    - Name: trailstack
      Match: '*'
      sink: null
      Shutdown_Timeout: ${WAIT}
      processors:
        logs:
          - name: grep
            exclude: log /healthz
    - name: trailstack
      alias: second
      sink: null
      shutdown_timout: 3s
      exceptions:
        - java
        - go
`

// YAML as the engine reads it: sections from service, plugins, parsers and the pipeline;
// keys in any case; a list on another plugin left alone, on a trailstack output an error
// naming its line; a misspelt key at its line; ${VAR} from the env section; processors not
// keys of the output.
func TestCheckYAML(t *testing.T) {
	f, err := Read("fluent-bit.yaml", []byte(yamlConf))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range f.Sections {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "SERVICE PLUGINS PARSER INPUT OUTPUT OUTPUT OUTPUT" {
		t.Errorf("sections %s", got)
	}
	if p := f.Sections[1].Keys.Get("path"); p != "/fluent-bit/plugins/out_trailstack.so" {
		t.Errorf("plugin path %q", p)
	}
	errs := Check("fluent-bit.yaml", []byte(yamlConf), []core.Kind{core.Null}, func(string) (string, bool) { return "", false })
	want := []string{
		`fluent-bit.yaml:31: output second: config key "exceptions": not a single value (a Go plugin reads only the first of a list)`,
		`fluent-bit.yaml:30: output second: keys that sink null does not read: shutdown_timout`,
	}
	if len(errs) != len(want) {
		t.Fatalf("%v", errs)
	}
	for i, w := range want {
		if errs[i].Error() != w {
			t.Errorf("%q, want %q", errs[i], w)
		}
	}
	// The environment comes first, as in the engine; here it makes the first output wrong.
	errs = Check("fluent-bit.yaml", []byte(yamlConf), []core.Kind{core.Null}, func(k string) (string, bool) { return "soon", k == "WAIT" })
	if len(errs) != 3 || !strings.HasPrefix(errs[0].Error(), `fluent-bit.yaml:22: output trailstack: config key "shutdown_timeout": invalid value "soon"`) {
		t.Errorf("%v", errs)
	}
}

func TestReadYAMLRefuses(t *testing.T) {
	for conf, want := range map[string]string{
		"pipeline:\n  outputs:\n    - name: a\n      Name: b\n": "line 4: Name repeated",
		"pipeline:\n  output:\n    - name: a\n":                 `line 2: pipeline has no "output"`,
		"pipeline:\n  outputs:\n    name: a\n":                  "line 3: outputs is not a list",
		"plugins: /a.so\n":                                      "line 1: plugins is not a list",
		"service: [\n":                                          "yaml:",
	} {
		if _, err := ReadYAML([]byte(conf)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", conf, err, want)
		}
	}
}

// The format is the extension's, as the engine chooses it.
func TestFormatByExtension(t *testing.T) {
	classic := []byte("[OUTPUT]\n    Name trailstack\n    sink null\n    bogus 1\n")
	if errs := Check("a.conf", classic, []core.Kind{core.Null}, func(string) (string, bool) { return "", false }); len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "a.conf:4:") {
		t.Errorf("classic: %v", errs)
	}
	if _, err := Read("a.yml", classic); err == nil {
		t.Error("a classic file named .yml was read")
	}
}
