package core

import (
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/trailstack/trailstack/metrics"
)

// BenchmarkFlush is one flush of a one-record chunk into the null sink, with its metrics,
// alone and while a scraper reads the endpoint in a loop: scraping must cost a flush
// nothing it can measure.
func BenchmarkFlush(b *testing.B) {
	chunk, err := os.ReadFile("../testdata/one-record.msgpack")
	if err != nil {
		b.Fatal(err)
	}
	in, err := NewInstance("bench", MapGetter{"sink": "null"}, []Kind{Null})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	addr, err := metrics.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	for _, scraping := range []bool{false, true} {
		stop := make(chan struct{})
		name := "alone"
		if scraping {
			name = "while-scraped"
			go func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if in.Flush(chunk, "t") != Delivered {
					b.Fatal("not delivered")
				}
			}
		})
		close(stop)
	}
	http.DefaultClient.CloseIdleConnections()
}
