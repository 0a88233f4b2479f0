//go:build trailstack_testsink

package main

import (
	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/testkit/testsink"
)

// The plugin's tests build the .so with this tag to get a destination they can inspect.
var testKinds = []core.Kind{testsink.Kind}
