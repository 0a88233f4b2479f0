// Command syslogdrain is a TLS (or TCP) syslog receiver for the demo and the benchmarks: it
// counts the newline-framed messages it reads, optionally prints them, and exits once it has
// the number it was told to expect. Empty lines are not counted.
//
//	syslogdrain -dir DIR -expect N [-print]   prints "listening ADDR" and writes DIR/ca.pem
//
// With -sample DIR (the demo), it checks what arrived against the container logs there
// (package testkit/sample): it prints "complete" once every line has arrived, serves on until
// SIGTERM, SIGINT or -timeout, then prints "sample: " and the count, and exits 1 unless every
// line arrived exactly once.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/trailstack/trailstack/testkit/sample"
	"github.com/trailstack/trailstack/testkit/testpki"
)

func main() {
	dir := flag.String("dir", ".", "where to write ca.pem")
	expect := flag.Int64("expect", 0, "exit after this many messages (0: never)")
	plain := flag.Bool("tcp", false, "plain TCP instead of TLS")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	print := flag.Bool("print", false, "print each message, cut to 200 bytes")
	addr := flag.String("addr", "127.0.0.1:0", "where to listen")
	sampleDir := flag.String("sample", "", "check what arrives against the container logs in this directory")
	flag.Parse()

	var tally *sample.Tally
	if *sampleDir != "" {
		var err error
		if tally, err = sample.Open(*sampleDir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

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
	var once, completeOnce sync.Once
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReaderSize(c, 1<<20)
				p := rfc5424.NewParser(rfc5424.WithBestEffort()) // one a connection: not safe to share
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
					if tally != nil {
						tallyFrame(tally, p, line[:len(line)-1])
						if tally.Count().Complete() {
							completeOnce.Do(func() {
								printMu.Lock()
								fmt.Println("complete")
								printMu.Unlock()
							})
						}
					}
				}
			}()
		}
	}()
	select {
	case <-done:
	case <-stop:
	case <-time.After(*timeout):
	}
	printMu.Lock()
	fmt.Printf("received %d messages, %d bytes\n", msgs.Load(), bytes.Load())
	if tally != nil {
		c := tally.Count()
		fmt.Printf("sample: %s\n", c)
		if !c.Complete() {
			os.Exit(1)
		}
	}
	if *expect > 0 && msgs.Load() < *expect {
		os.Exit(1)
	}
}

// tallyFrame counts one LF-framed RFC 5424 message: its time stamp says which sample line it
// starts with, its MSG holds the lines joined to it. A frame that does not parse counts as
// a message no sample line has.
func tallyFrame(t *sample.Tally, p syslog.Machine, frame []byte) {
	m, err := p.Parse(frame)
	var at time.Time
	var msg string
	if m != nil {
		sm := m.(*rfc5424.SyslogMessage)
		if sm.Timestamp != nil {
			at = *sm.Timestamp
		}
		if sm.Message != nil {
			msg = *sm.Message
		}
	}
	if err != nil && at.IsZero() {
		fmt.Fprintf(os.Stderr, "not RFC 5424: %v: %.200q\n", err, frame)
	}
	t.Add(at, msg)
}
