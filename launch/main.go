// Command trailstack-launch runs before Fluent Bit in the image and then becomes it (exec),
// so that a restarted container is covered as well as a new pod. It gives Fluent Bit's tail
// back what tail would otherwise lose at start: the unread rest of container logs that the
// kubelet rotated while no agent ran (see resume.go). Whatever goes wrong, Fluent Bit still
// starts: the step only ever adds files for tail to read, and says what it did.
//
//	trailstack-launch [-db PATH] [-resume DIR] [-containers DIR] -- fluent-bit ARGS...
//	trailstack-launch -uninstall DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	db := flag.String("db", "/var/lib/trailstack/tail.db", "Fluent Bit tail's DB (its DB key)")
	dir := flag.String("resume", "/var/lib/trailstack/resume", "where rotated files are handed to tail (a Path of the tail input)")
	containers := flag.String("containers", "/var/log/containers", "the kubelet's container log links")
	repair := flag.String("repair", "/var/lib/trailstack/repair", "where the outputs write lost lines back for the repair input (its path's root)")
	uninstall := flag.String("uninstall", "", "remove everything in this state directory, then wait (the uninstall DaemonSet)")
	flag.Parse()
	if *uninstall != "" {
		removeState(*uninstall)
		// A DaemonSet's pod runs on until the DaemonSet is deleted. Waiting on a signal, not
		// on nothing: a process whose every goroutine blocks forever is a deadlock to Go.
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
		<-stop
		return
	}
	argv := flag.Args()
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "usage: trailstack-launch [flags] -- fluent-bit ARGS...")
		os.Exit(2)
	}
	// The repair input's path must exist when tail first scans it, or tail logs a read
	// error at every start; the outputs make their own directories under it.
	if err := os.MkdirAll(*repair, 0o755); err != nil {
		logf("warn", "repair directory %s: %v", *repair, err)
	}
	r := &resumer{dir: *dir, containers: *containers, log: logf}
	if err := r.run(*db); err != nil {
		logf("error", "rotated logs not resumed, Fluent Bit starts without them: %v", err)
	}
	bin, err := exec.LookPath(argv[0])
	if err == nil {
		err = syscall.Exec(bin, argv, os.Environ())
	}
	logf("error", "cannot start %s: %v", argv[0], err)
	os.Exit(1)
}

// logf writes a line as Fluent Bit writes its own, so the pod's log reads as one.
func logf(level, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] [%5s] [trailstack-launch] %s\n", time.Now().UTC().Format("2006/01/02 15:04:05.000"), level, fmt.Sprintf(format, args...))
}

// removeState empties the node's state directory (buffered chunks, tail's offsets, handed
// files) for an uninstall; the hostPath itself is the node's, and stays.
func removeState(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		logf("error", "uninstall: %v", err)
		return
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			logf("error", "uninstall: %v", err)
		}
	}
	logf("info", "uninstall: removed %d entries of %s", len(entries), dir)
}
