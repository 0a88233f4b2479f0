// Command confcheck checks a Fluent Bit configuration's trailstack outputs offline, with the
// plugin's own parser, as Init would: a value that does not parse, a misspelt key. Run it on
// fluent-bit.conf before deploying (make check-conf CONF=path):
//
//	go run ./tools/confcheck conf/fluent-bit.conf
//
// ${VAR} is taken from the environment it runs in; a destination or credential whose
// variable is unset there is left to the agent, which starts that output not ready.
package main

import (
	"fmt"
	"os"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/sinks"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: confcheck fluent-bit.conf...")
		os.Exit(2)
	}
	bad := false
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		errs := core.CheckClassic(data, sinks.All, os.LookupEnv)
		for _, err := range errs {
			fmt.Printf("%s: %v\n", path, err)
		}
		if len(errs) == 0 {
			fmt.Printf("%s: every trailstack output parses\n", path)
		}
		bad = bad || len(errs) > 0
	}
	if bad {
		os.Exit(1)
	}
}
