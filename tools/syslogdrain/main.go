// Command syslogdrain is a TLS (or TCP) syslog receiver for the demo and the benchmarks: it
// counts the newline-framed messages it reads, optionally prints them, and exits once it has
// the number it was told to expect. Empty lines are not counted.
//
//	syslogdrain -dir DIR -expect N [-print]   prints "listening ADDR" and writes DIR/ca.pem
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailstack/trailstack/testkit/testpki"
)

func main() {
	dir := flag.String("dir", ".", "where to write ca.pem")
	expect := flag.Int64("expect", 0, "exit after this many messages (0: never)")
	plain := flag.Bool("tcp", false, "plain TCP instead of TLS")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	print := flag.Bool("print", false, "print each message, cut to 200 bytes")
	addr := flag.String("addr", "127.0.0.1:0", "where to listen")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !*plain {
		pki, err := testpki.Generate(*dir, "localhost")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ln = tls.NewListener(ln, pki.Server)
	}
	fmt.Printf("listening %s\n", ln.Addr())

	var msgs, bytes atomic.Int64
	var printMu sync.Mutex // one message per line on stdout
	done := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReaderSize(c, 1<<20)
				for {
					line, err := r.ReadSlice('\n')
					if err == bufio.ErrBufferFull {
						bytes.Add(int64(len(line)))
						continue
					}
					if err != nil {
						return
					}
					bytes.Add(int64(len(line)))
					if len(line) == 1 {
						// Fluent Bit's C out_syslog sends a message's trailing newline
						// inside it: the empty line after it is not a message.
						continue
					}
					if *print {
						printMu.Lock()
						fmt.Printf("  %.200s\n", line[:len(line)-1])
						printMu.Unlock()
					}
					if n := msgs.Add(1); *expect > 0 && n >= *expect {
						once.Do(func() { close(done) })
					}
				}
			}()
		}
	}()
	select {
	case <-done:
	case <-time.After(*timeout):
	}
	fmt.Printf("received %d messages, %d bytes\n", msgs.Load(), bytes.Load())
	if *expect > 0 && msgs.Load() < *expect {
		os.Exit(1)
	}
}
