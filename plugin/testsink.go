//go:build trailstack_testsink

package main

// The plugin's tests build the .so with this tag to get a destination they can inspect.
import _ "github.com/trailstack/trailstack/internal/testsink"
