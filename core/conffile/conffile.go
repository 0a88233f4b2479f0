// Package conffile reads a whole Fluent Bit configuration file into core's sections, in the
// format the engine chooses by the file's extension (.yaml or .yml: YAML; anything else:
// classic), and checks its trailstack outputs offline. It is apart from core so that the
// plugin does not link a YAML parser it never uses.
package conffile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/trailstack/trailstack/core"
)

// IsYAML reports whether Fluent Bit reads path as YAML.
func IsYAML(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

// File is a configuration read whole: its sections, and the variables its YAML env
// section defines.
type File struct {
	Sections []core.Section
	Env      map[string]string
}

// Read reads a configuration in the format its name says.
func Read(path string, data []byte) (*File, error) {
	if IsYAML(path) {
		f, err := ReadYAML(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return f, nil
	}
	secs, err := core.ReadClassic(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Sections: secs}, nil
}

// Check reads a configuration and checks its trailstack outputs as Init would: each problem
// names the file, the line and the key. ${VAR} comes from lookup, else the file's env
// section.
func Check(path string, data []byte, kinds []core.Kind, lookup func(string) (string, bool)) []error {
	f, err := Read(path, data)
	if err != nil {
		return []error{err}
	}
	return core.CheckSections(path, f.Sections, kinds, func(k string) (string, bool) {
		if v, ok := lookup(k); ok {
			return v, true
		}
		v, ok := f.Env[k]
		return v, ok
	})
}

// CheckFile is Check of the file at path, ${VAR} from the environment.
func CheckFile(path string, kinds []core.Kind) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{err}
	}
	return Check(path, data, kinds, os.LookupEnv)
}

// The YAML format's lists of plugin sections, by the section name each element is.
var pipelineLists = map[string]string{"inputs": "INPUT", "filters": "FILTER", "outputs": "OUTPUT"}

// ReadYAML reads Fluent Bit's YAML format: service, pipeline (inputs, filters, outputs),
// plugins, parsers, multiline_parsers and env. Keys are case-insensitive and a repeated
// one is an error. A plugin's processors are the engine's to run and are not keys of it.
func ReadYAML(data []byte) (*File, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	f := &File{Env: map[string]string{}}
	if len(doc.Content) == 0 {
		return f, nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the file is not a mapping of sections", top.Line)
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		switch name := strings.ToLower(k.Value); name {
		case "service":
			s, err := section("SERVICE", v)
			if err != nil {
				return nil, err
			}
			f.Sections = append(f.Sections, s)
		case "env":
			if v.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("line %d: env is not a mapping", v.Line)
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				f.Env[v.Content[j].Value] = v.Content[j+1].Value
			}
		case "plugins":
			if v.Kind != yaml.SequenceNode {
				return nil, fmt.Errorf("line %d: plugins is not a list of paths", v.Line)
			}
			for _, p := range v.Content {
				s := core.NewSection("PLUGINS", p.Line)
				if err := s.Set("Path", p.Value, p.Line); err != nil {
					return nil, err
				}
				f.Sections = append(f.Sections, s)
			}
		case "parsers", "multiline_parsers":
			secs, err := list(strings.TrimSuffix(name, "s"), v)
			if err != nil {
				return nil, err
			}
			f.Sections = append(f.Sections, secs...)
		case "pipeline":
			if v.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("line %d: pipeline is not a mapping", v.Line)
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				kind, ok := pipelineLists[strings.ToLower(v.Content[j].Value)]
				if !ok {
					return nil, fmt.Errorf("line %d: pipeline has no %q (inputs, filters, outputs)", v.Content[j].Line, v.Content[j].Value)
				}
				secs, err := list(kind, v.Content[j+1])
				if err != nil {
					return nil, err
				}
				f.Sections = append(f.Sections, secs...)
			}
		}
	}
	return f, nil
}

func list(kind string, v *yaml.Node) ([]core.Section, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: %s is not a list", v.Line, strings.ToLower(kind)+"s")
	}
	var out []core.Section
	for _, e := range v.Content {
		s, err := section(kind, e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func section(kind string, v *yaml.Node) (core.Section, error) {
	s := core.NewSection(kind, v.Line)
	if v.Kind != yaml.MappingNode {
		return s, fmt.Errorf("line %d: a %s is not a mapping of keys", v.Line, strings.ToLower(kind))
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if strings.EqualFold(k.Value, "processors") {
			continue
		}
		value := val.Value
		if val.Kind != yaml.ScalarNode {
			s.NotScalar = append(s.NotScalar, k.Value)
			value = ""
			if val.Kind == yaml.SequenceNode && len(val.Content) > 0 {
				value = val.Content[0].Value // what the plugin would read
			}
		}
		if err := s.Set(k.Value, value, k.Line); err != nil {
			return s, err
		}
	}
	return s, nil
}
