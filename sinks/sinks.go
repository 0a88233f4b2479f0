// Package sinks is the table of destinations an instance's sink key chooses from: the
// plugin builds its instances from it and the configuration tests check files against it.
package sinks

import (
	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/stackdriver"
	"github.com/trailstack/trailstack/syslog"
)

// All is every destination the shipped plugin offers.
var All = []core.Kind{syslog.Kind, stackdriver.Kind, core.Null}
