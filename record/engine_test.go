package record

import "testing"

// The first time, stream, _p and logtag are the engine's, later ones the application's;
// kubernetes is the filter's wherever it is; other keys are the application's.
func TestEngineKeys(t *testing.T) {
	var e EngineKeys
	for _, c := range []struct {
		key    string
		engine bool
	}{
		{"time", true}, {"stream", true}, {"_p", true}, {"level", false}, {"stream", false},
		{"kubernetes", true}, {"logtag", true}, {"time", false}, {"logtag", false}, {"kubernetes", true},
	} {
		if got := e.Is([]byte(c.key)); got != c.engine {
			t.Errorf("%s: engine's %v, want %v", c.key, got, c.engine)
		}
	}
}
