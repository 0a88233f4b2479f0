//go:build !trailstack_testsink

package main

import "github.com/trailstack/trailstack/core"

// The shipped plugin has no test destination.
var testKinds []core.Kind
