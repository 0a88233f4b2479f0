package record_test

import (
	"encoding/binary"
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/record"
)

// A chunk as Fluent Bit 5 hands it to an output: events [[EventTime, metadata], body],
// one after another. The decoder reads them in place, without copying the chunk.
func ExampleDecoder() {
	var chunk []byte
	for i, line := range []string{"GET / 200", "GET /cart 500"} {
		chunk = msgp.AppendArrayHeader(chunk, 2)
		chunk = msgp.AppendArrayHeader(chunk, 2)
		var t [8]byte
		binary.BigEndian.PutUint32(t[:4], uint32(1795694400+i)) // seconds
		binary.BigEndian.PutUint32(t[4:], 5000)                 // nanoseconds
		chunk, _ = msgp.AppendExtension(chunk, &msgp.RawExtension{Type: 0, Data: t[:]})
		chunk = msgp.AppendMapHeader(chunk, 0)
		chunk = msgp.AppendMapHeader(chunk, 2)
		chunk = msgp.AppendString(chunk, "stream")
		chunk = msgp.AppendString(chunk, "stdout")
		chunk = msgp.AppendString(chunk, "log")
		chunk = msgp.AppendString(chunk, line)
	}

	d := record.NewDecoder(chunk)
	for d.Next() {
		r := d.Record()
		log, _ := r.Lookup("log")
		text, _ := log.Bytes()
		fmt.Println(r.Time().UTC().Format("15:04:05.000000"), string(text))
	}
	if err := d.Err(); err != nil {
		fmt.Println("corrupt:", err)
	}
	// Output:
	// 12:00:00.000005 GET / 200
	// 12:00:01.000005 GET /cart 500
}
