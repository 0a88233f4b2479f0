// Command confcheck checks a Fluent Bit configuration's trailstack outputs offline, with the
// plugin's own parser, as Init would: a value that does not parse, a misspelt key, a list
// where a single value must be. YAML (.yaml, .yml) or classic, as Fluent Bit chooses by the
// extension. Run it before deploying (make check-conf CONF=path):
//
//	go run ./tools/confcheck conf/fluent-bit.yaml
//
// ${VAR} is taken from the environment it runs in, else the file's env section; a
// destination or credential whose variable is unset there is left to the agent, which
// starts that output not ready.
package main

import (
	"fmt"
	"os"

	"github.com/trailstack/trailstack/core/conffile"
	"github.com/trailstack/trailstack/sinks"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: confcheck fluent-bit.yaml...")
		os.Exit(2)
	}
	bad := false
	for _, path := range os.Args[1:] {
		errs := conffile.CheckFile(path, sinks.All)
		for _, err := range errs {
			fmt.Println(err)
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
