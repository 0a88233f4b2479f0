package core_test

import (
	"fmt"
	"time"

	"github.com/trailstack/trailstack/core"
)

// A Parser reads an instance's keys strictly: each typed reader checks its key, and the
// first error names the key and the value, as Init reports it.
func ExampleParser() {
	keys := core.MapGetter{"address": "logs3.papertrailapp.com:12345", "ack_timeout": "soon", "max_size": "8K"}
	p := core.NewParser(keys)
	addr := p.String("address", "")
	maxSize := p.Size("max_size", 2048, 1024, 1<<20)
	ack := p.Duration("ack_timeout", 30*time.Second, time.Second, time.Hour)
	fmt.Println(addr, maxSize, ack)
	fmt.Println(p.Err())
	// Output:
	// logs3.papertrailapp.com:12345 8192 30s
	// config key "ack_timeout": invalid value "soon": want a duration such as 5s or 500ms
}
