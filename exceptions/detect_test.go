package exceptions

import (
	"strings"
	"testing"
)

// Traces as the languages' runtimes print them, each between ordinary lines that must stay
// on their own.
var traces = map[string]string{
	"java": `Exception in thread "main" java.lang.IllegalStateException: order 7 failed
	at com.example.shop.Orders.place(Orders.java:42)
	at com.example.shop.Main.main(Main.java:10)
Caused by: java.io.IOException: disk full
	at java.base/java.io.FileOutputStream.writeBytes(Native Method)
	... 2 more`,
	"java-logged": `2026-11-30 10:00:00.123 ERROR [main] c.e.shop.Orders: RuntimeException: payment refused
    at com.example.shop.Orders.pay(Orders.java:88)
    at com.example.shop.Orders.place(Orders.java:40)`,
	"python": `Traceback (most recent call last):
  File "/app/main.py", line 12, in <module>
    main()
  File "/app/main.py", line 8, in main
    return 1 / 0
           ~~^~~
ZeroDivisionError: division by zero`,
	"python-chained": `Traceback (most recent call last):
  File "/app/db.py", line 3, in get
    raise KeyError("x")
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/db.py", line 5, in get
    raise ValueError("y")
ValueError: y`,
	"go": `panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.lookup(...)
	/app/main.go:14
main.main()
	/app/main.go:9 +0x1d`,
	"go-goroutines": `panic: boom [recovered]
	panic: boom

goroutine 7 [running]:
main.worker(0xc000012345)
	/app/worker.go:30 +0x65
created by main.main in goroutine 1
	/app/main.go:12 +0x45

goroutine 1 [chan receive]:
main.main()
	/app/main.go:15 +0x70`,
	"ruby": "/app/lib/shop.rb:12:in `place': order failed (RuntimeError)\n\tfrom /app/lib/shop.rb:4:in `run'\n\tfrom /app/bin/shop:3:in `<main>'",
	"js": `TypeError: Cannot read properties of undefined (reading 'id')
    at getUser (/app/src/users.js:10:15)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)`,
	"php": `PHP Fatal error:  Uncaught Exception: no stock in /var/www/shop.php:7
Stack trace:
#0 /var/www/index.php(3): order()
#1 {main}
  thrown in /var/www/shop.php on line 7`,
	"csharp": `Unhandled exception. System.InvalidOperationException: Sequence contains no elements
   at System.Linq.ThrowHelper.ThrowNoElementsException()
   at Shop.Program.Main(String[] args) in /app/Program.cs:line 9
--- End of stack trace from previous location ---
   at Shop.Program.<Main>(String[] args)`,
	"dart": `Unhandled exception:
FormatException: Invalid radix-10 number (at character 1)
#0      int._throwFormatException (dart:core-patch/integers_patch.dart:195:5)
#1      main (file:///app/bin/main.dart:5:7)`,
}

// Lines that look a little like traces but are ordinary log lines.
var ordinary = []string{
	"GET /api/items 200 12ms",
	"level=error msg=\"upstream Error: timeout\"", // one line that names an error: no frames follow
	"",
	"goroutine count: 12",
	"  indented ordinary line",
	"at the end of the day",
}

func lines(s string) [][]byte {
	var out [][]byte
	for _, l := range strings.Split(s, "\n") {
		out = append(out, []byte(l))
	}
	return out
}

func TestEachLanguageJoinedAndNothingElse(t *testing.T) {
	d := &Detector{Languages: All, MaxLines: 1000, MaxBytes: 500000}
	for name, tr := range traces {
		for _, before := range ordinary {
			for _, after := range ordinary {
				in := lines(before + "\n" + tr + "\n" + after)
				got := d.Traces(in, nil)
				n := len(lines(tr))
				if len(got) != 1 || got[0] != (Trace{1, 1 + n}) {
					t.Fatalf("%s between %q and %q: %v, want [{1 %d}]", name, before, after, got, 1+n)
				}
			}
		}
	}
}

func TestLanguagesNarrowAndLimitsCut(t *testing.T) {
	d := &Detector{Languages: Python}
	if got := d.Traces(lines(traces["java"]), nil); len(got) != 0 {
		t.Errorf("java joined with python only: %v", got)
	}
	if got := d.Traces(lines(traces["python"]), nil); len(got) != 1 {
		t.Errorf("python not joined: %v", got)
	}
	// Cut at a limit, the trace goes on as what follows makes of it: here the Caused by
	// part, a trace of its own.
	d = &Detector{Languages: All, MaxLines: 3}
	if got := d.Traces(lines(traces["java"]), nil); len(got) != 2 || got[0] != (Trace{0, 3}) || got[1] != (Trace{3, 6}) {
		t.Errorf("MaxLines 3: %v", got)
	}
	java := lines(traces["java"])
	d = &Detector{Languages: All, MaxBytes: len(java[0]) + 1 + len(java[1])}
	if got := d.Traces(java, nil); len(got) < 1 || got[0] != (Trace{0, 2}) {
		t.Errorf("MaxBytes %d: %v", d.MaxBytes, got)
	}
	// A line that is not a log line ends a trace.
	in := lines(traces["js"])
	in = append(in[:2], append([][]byte{nil}, in[2:]...)...)
	if got := (&Detector{Languages: All}).Traces(in, nil); len(got) != 1 || got[0] != (Trace{0, 2}) {
		t.Errorf("cut by a record without a log line: %v", got)
	}
	for _, c := range []struct {
		in   string
		want Language
		err  bool
	}{{"all", All, false}, {"none", 0, false}, {"java, go", Java | Go, false}, {"cobol", 0, true}} {
		got, err := ParseLanguages(c.in)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("ParseLanguages(%q) = %v, %v", c.in, got, err)
		}
	}
}

// Two traces back to back are two; blank lines after a Go trace are not its own.
func TestTracesBackToBack(t *testing.T) {
	d := &Detector{Languages: All}
	in := lines(traces["java"] + "\n" + traces["python"] + "\n" + traces["go"] + "\n\n\nnext line")
	j, p, g := len(lines(traces["java"])), len(lines(traces["python"])), len(lines(traces["go"]))
	want := []Trace{{0, j}, {j, j + p}, {j + p, j + p + g}}
	got := d.Traces(in, nil)
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("%v, want %v", got, want)
	}
}

// BenchmarkOrdinaryLines is the cost of lines that hold no trace, which is nearly every
// line, one in ten naming an error: ns/op per line.
func BenchmarkOrdinaryLines(b *testing.B) {
	d := &Detector{Languages: All}
	var in [][]byte
	for i := 0; i < 1000; i++ {
		line := `10.4.3.7 - - [27/Nov/2026:06:00:00 +0000] "GET /api/v1/items/17 HTTP/1.1" 200 1312 "-" "Mozilla/5.0 (X11; Linux x86_64) bench/1.0" rt=0.012`
		if i%10 == 9 {
			line = `2026/11/27 06:00:00 [error] 29#29: open() "/usr/share/nginx/html/favicon.ico" failed, Error: ENOENT`
		}
		in = append(in, []byte(line))
	}
	var out []Trace
	for b.Loop() {
		if out = d.Traces(in, out[:0]); len(out) != 0 {
			b.Fatal("a trace")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in)), "ns/line")
}
