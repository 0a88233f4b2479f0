package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A node's log directories as the kubelet lays them out, and tail's DB as Fluent Bit writes
// it (the same table, through SQLite).
type node struct {
	t                        *testing.T
	root, containers, resume string
	db                       string
}

func newNode(t *testing.T) *node {
	root := t.TempDir()
	n := &node{t: t, root: root, containers: filepath.Join(root, "containers"), resume: filepath.Join(root, "state", "resume"), db: filepath.Join(root, "state", "tail.db")}
	for _, d := range []string{n.containers, filepath.Dir(n.db)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// newPodNode is a node with one container, its log and its link.
func newPodNode(t *testing.T) (n *node, log, link string) {
	n = newNode(t)
	log, link = n.pod("api-1")
	return n, log, link
}

// pod makes a container's log directory and link; it returns the log's path.
func (n *node) pod(name string) (log, link string) {
	dir := filepath.Join(n.root, "pods", "blog_"+name+"_uid", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	log = filepath.Join(dir, "0.log")
	n.write(log, "")
	link = filepath.Join(n.containers, name+"_blog_app-"+strings.Repeat("ab", 32)+".log")
	if err := os.Symlink(log, link); err != nil {
		n.t.Fatal(err)
	}
	return log, link
}

func (n *node) write(path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(s)
}

// lines is count numbered lines from first.
func lines(first, count int) string {
	var b strings.Builder
	for i := first; i < first+count; i++ {
		fmt.Fprintf(&b, "2026-11-30T10:00:00.000000000Z stdout F line %d\n", i)
	}
	return b.String()
}

// rotate renames log as the kubelet does, compressing the rotated file before it as the
// kubelet does on its next rotation. It returns the rotated name.
func (n *node) rotate(log string, at time.Time) string {
	if prev, _ := filepath.Glob(log + ".*[0-9]"); len(prev) > 0 {
		for _, p := range prev {
			data, _ := os.ReadFile(p)
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(data)
			zw.Close()
			os.WriteFile(p+".gz", b.Bytes(), 0o644)
			os.Remove(p)
		}
	}
	rotated := log + "." + at.UTC().Format("20060102-150405")
	if err := os.Rename(log, rotated); err != nil {
		n.t.Fatal(err)
	}
	n.write(log, "")
	return rotated
}

func ino(t *testing.T, path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return inode(fi)
}

// tailRows writes tail's table as Fluent Bit 5.1.1 creates it, with these rows.
func (n *node) tailRows(rows ...row) {
	db, err := sql.Open("sqlite", n.db)
	if err != nil {
		n.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS in_tail_files (id INTEGER PRIMARY KEY, name TEXT NOT NULL, offset INTEGER, inode INTEGER, created INTEGER, rotated INTEGER DEFAULT 0); DELETE FROM in_tail_files`); err != nil {
		n.t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := db.Exec(`INSERT INTO in_tail_files (name, offset, inode, created, rotated) VALUES (?, ?, ?, 0, ?)`, r.name, r.offset, int64(r.inode), r.rotated); err != nil {
			n.t.Fatal(err)
		}
	}
}

// agentRead is an agent that read count lines of log, saved its offset and stopped; it
// returns when, as the DB's time says.
func (n *node) agentRead(log, link string, count int) time.Time {
	n.write(log, lines(0, count))
	n.tailRows(row{name: link, offset: int64(len(lines(0, count))), inode: ino(n.t, log)})
	stopped := time.Now().Truncate(time.Second)
	os.Chtimes(n.db, stopped, stopped)
	return stopped
}

// launch runs the step and returns what tail will read from the handed files, in handing
// order, as tail reads them: a link from the row's offset (or its head without a row), a
// decompressed rest from its head.
func (n *node) launch() (string, []string) {
	var logged []string
	r := &resumer{dir: n.resume, containers: n.containers, log: func(level, format string, args ...any) {
		logged = append(logged, level+": "+fmt.Sprintf(format, args...))
	}}
	if err := r.run(n.db); err != nil {
		n.t.Fatal(err)
	}
	rows, _, _ := readRows(n.db)
	offsets := map[uint64]int64{}
	for _, rw := range rows {
		offsets[rw.inode] = rw.offset
	}
	var got strings.Builder
	files, _ := filepath.Glob(filepath.Join(n.resume, "*", "*.log"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			n.t.Fatal(err)
		}
		got.Write(data[offsets[ino(n.t, f)]:])
	}
	return got.String(), logged
}

func TestOneRotationWhileNoAgentRan(t *testing.T) {
	n, log, link := newPodNode(t)
	stopped := n.agentRead(log, link, 100)
	n.write(log, lines(100, 50)) // after the agent stopped
	n.rotate(log, stopped.Add(time.Second))
	n.write(log, lines(150, 10)) // tail reads the new file itself
	got, logged := n.launch()
	if got != lines(100, 50) {
		t.Fatalf("handed %q, want lines 100-149\n%v", got, logged)
	}
	// The name is the link's, for the tag.
	if m, _ := filepath.Glob(filepath.Join(n.resume, "*", filepath.Base(link))); len(m) != 1 {
		t.Errorf("handed as %v", m)
	}
}

func TestTwoRotationsWhileNoAgentRan(t *testing.T) {
	n, log, link := newPodNode(t)
	stopped := n.agentRead(log, link, 100)
	n.write(log, lines(100, 50))
	n.rotate(log, stopped.Add(time.Second))
	n.write(log, lines(150, 50))
	n.rotate(log, stopped.Add(2*time.Second)) // the first is compressed now
	n.write(log, lines(200, 10))
	got, logged := n.launch()
	if got != lines(100, 100) {
		t.Fatalf("handed %q, want lines 100-199\n%v", got, logged)
	}
}

func TestReadFilesAreClearedAndNothingIsHandedTwice(t *testing.T) {
	n, log, link := newPodNode(t)
	n.write(log, lines(0, 100))
	n.tailRows(row{name: link, offset: 10, inode: ino(t, log)})
	os.Chtimes(n.db, time.Now(), time.Now())
	rotated := n.rotate(log, time.Now().Add(time.Second))
	if got, _ := n.launch(); got != lines(0, 100)[10:] {
		t.Fatalf("handed %q", got)
	}
	handed, _ := filepath.Glob(filepath.Join(n.resume, "*", "*.log"))
	// The next agent read part of it, under the handed name, and stopped: handed again as it is.
	n.tailRows(row{name: handed[0], offset: 20, inode: ino(t, rotated)})
	if got, _ := n.launch(); got != lines(0, 100)[20:] {
		t.Fatalf("handed %q after a partial read", got)
	}
	// Read to its end: cleared.
	n.tailRows(row{name: handed[0], offset: int64(len(lines(0, 100))), inode: ino(t, rotated)})
	if got, _ := n.launch(); got != "" {
		t.Fatalf("handed %q after it was read", got)
	}
	if m, _ := filepath.Glob(filepath.Join(n.resume, "*", "*")); len(m) != 0 {
		t.Errorf("left %v", m)
	}
}

// A file tail saw rotated (its row renamed, rotated=1) and that the kubelet compressed
// before tail finished it.
func TestRotatedRowCompressedSince(t *testing.T) {
	n, log, link := newPodNode(t)
	n.write(log, lines(0, 100))
	rotated := n.rotate(log, time.Now())
	n.write(log, lines(100, 20))
	n.tailRows(row{name: rotated, offset: int64(len(lines(0, 60))), inode: ino(t, rotated), rotated: true},
		row{name: link, offset: int64(len(lines(100, 20))), inode: ino(t, log)})
	n.rotate(log, time.Now().Add(time.Second)) // compresses the first
	n.write(log, lines(120, 5))
	os.Chtimes(n.db, time.Now().Add(-time.Minute), time.Now().Add(-time.Minute))
	got, logged := n.launch()
	if got != lines(60, 40) {
		t.Fatalf("handed %q, want lines 60-99\n%v", got, logged)
	}
}

// Nothing is handed while tail finds every file itself, and a compressed file that does not
// continue where tail stopped is not handed (said, not guessed).
func TestNothingHandedWithoutARotation(t *testing.T) {
	n, log, link := newPodNode(t)
	n.write(log, lines(0, 10))
	n.tailRows(row{name: link, offset: 5, inode: ino(t, log)})
	if got, logged := n.launch(); got != "" || len(logged) != 0 {
		t.Fatalf("handed %q, logged %v", got, logged)
	}
	n.tailRows(row{name: link, offset: 7, inode: ino(t, log)}) // 7 is inside a line
	os.Chtimes(n.db, time.Now().Add(-time.Minute), time.Now().Add(-time.Minute))
	n.rotate(log, time.Now())
	n.rotate(log, time.Now().Add(time.Second))
	got, logged := n.launch()
	if got != "" || !strings.Contains(strings.Join(logged, "\n"), "does not continue where tail stopped") {
		t.Fatalf("handed %q, logged %v", got, logged)
	}
}

// A file created after tail last wrote its DB that has a row's inode (the filesystem reused
// it) is not that row's file: the row is forgotten, so tail reads the new file from its head.
func TestReusedInodeIsForgotten(t *testing.T) {
	n, log, link := newPodNode(t)
	n.write(log, lines(0, 10))
	n.tailRows(row{name: link, offset: 100, inode: ino(t, log)})
	past := time.Now().Add(-time.Minute)
	os.Chtimes(n.db, past, past)
	if _, logged := n.launch(); !strings.Contains(strings.Join(logged, "\n"), "forgot 1 offsets") {
		t.Fatalf("logged %v", logged)
	}
	if rows, _, _ := readRows(n.db); len(rows) != 0 {
		t.Fatalf("rows %v", rows)
	}
}

// More rotations than the kubelet keeps: the file tail was reading is gone, and said so;
// the files rotated since are handed whole.
func TestRotatedBeyondRetention(t *testing.T) {
	n, log, link := newPodNode(t)
	stopped := n.agentRead(log, link, 10)
	n.write(log, lines(10, 10))
	first := n.rotate(log, stopped.Add(time.Second))
	n.write(log, lines(20, 10))
	n.rotate(log, stopped.Add(2*time.Second))
	os.Remove(first + ".gz") // the kubelet's retention
	got, logged := n.launch()
	if got != lines(20, 10) || !strings.Contains(strings.Join(logged, "\n"), "is gone") {
		t.Fatalf("handed %q, logged %v", got, logged)
	}
}

// A Fluent Bit killed outright leaves its last offsets in the write-ahead log (tail's DB is
// in WAL mode by default): SQLite replays them. The files are copied while the writer still
// holds the DB open, as a crash leaves them.
func TestOffsetsInTheWriteAheadLog(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, "tail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0",
		"CREATE TABLE in_tail_files (id INTEGER PRIMARY KEY, name TEXT NOT NULL, offset INTEGER, inode INTEGER, created INTEGER, rotated INTEGER DEFAULT 0)",
		"INSERT INTO in_tail_files (name, offset, inode, created) VALUES ('/var/log/containers/a.log', 4096, 77, 0)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	crashed := t.TempDir()
	for _, f := range []string{"tail.db", "tail.db-wal"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(crashed, f), data, 0o644)
	}
	rows, _, err := readRows(filepath.Join(crashed, "tail.db"))
	if err != nil || len(rows) != 1 || rows[0].offset != 4096 || rows[0].inode != 77 {
		t.Fatalf("rows %v, %v", rows, err)
	}
}

// The first start on a node: no DB yet, nothing to hand.
func TestNoDBYet(t *testing.T) {
	n := newNode(t)
	if got, logged := n.launch(); got != "" || len(logged) != 0 {
		t.Fatalf("handed %q, logged %v", got, logged)
	}
}

func TestUninstallEmptiesTheStateDirectory(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "storage", "tail.0"), 0o755)
	os.WriteFile(filepath.Join(dir, "storage", "tail.0", "1-chunk.flb"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "tail.db"), []byte("x"), 0o644)
	removeState(dir)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left %v", entries)
	}
}

// The uninstall DaemonSet's process empties the directory and then runs on until the
// kubelet stops it, which it answers by exiting cleanly.
func TestUninstallRunsUntilStopped(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "trailstack-launch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tail.db"), []byte("x"), 0o644)
	cmd := exec.Command(bin, "-uninstall", dir)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stderr).ReadString('\n')
	if !strings.Contains(line, "uninstall: removed 1 entries") {
		t.Fatalf("said %q", line)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("exited before it was stopped: %v", err)
	case <-time.After(time.Second): // still running, as a DaemonSet's pod must
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("stopped with %v", err)
	}
}

// agentStopped is an agent that read count lines of log and stopped now, as the DB's time
// says (agentRead's second is before the log was created, which reads as a reused inode).
func (n *node) agentStopped(log, link string, count int) time.Time {
	n.agentRead(log, link, count)
	now := time.Now()
	os.Chtimes(n.db, now, now)
	return now
}

// container makes the log directory of a pod's container and the link of its run-th run
// (N.log), as the kubelet does for each container of a pod, init containers included.
func (n *node) container(pod, name string, run int) (log, link string) {
	dir := filepath.Join(n.root, "pods", "blog_"+pod+"_uid", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	log = filepath.Join(dir, fmt.Sprintf("%d.log", run))
	n.write(log, "")
	link = filepath.Join(n.containers, fmt.Sprintf("%s_blog_%s-%s%d.log", pod, name, strings.Repeat("cd", 31), run))
	if err := os.Symlink(log, link); err != nil {
		n.t.Fatal(err)
	}
	return log, link
}

// handedTo is what tail will read of the files handed under link's name.
func (n *node) handedTo(link string) string {
	var got strings.Builder
	files, _ := filepath.Glob(filepath.Join(n.resume, "*", filepath.Base(link)))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			n.t.Fatal(err)
		}
		got.Write(data)
	}
	return got.String()
}

// A pod that started while no agent ran: each file the kubelet rotated before an agent came
// back is handed whole, compressed or not, for each of its containers (an init container
// too), and the launcher says per container what it handed. Its current files tail reads
// itself, from their heads.
func TestContainersNoAgentSawAreHandedTheirRotatedFiles(t *testing.T) {
	n, log, link := newPodNode(t)
	stopped := n.agentStopped(log, link, 10)

	app, appLink := n.container("web-1", "app", 0)
	side, sideLink := n.container("web-1", "proxy", 0)
	initLog, initLink := n.container("web-1", "migrate", 0)
	n.write(initLog, lines(0, 30))
	n.rotate(initLog, stopped.Add(time.Second))
	n.write(initLog, lines(30, 5))
	for r := 0; r < 3; r++ { // three rotations: two compressed, one plain
		n.write(app, lines(100*r, 100))
		n.rotate(app, stopped.Add(time.Duration(2+r)*time.Second))
	}
	n.write(app, lines(300, 7))
	n.write(side, lines(0, 40))
	n.rotate(side, stopped.Add(2*time.Second))

	_, logged := n.launch()
	for _, c := range []struct {
		link, want string
		files      int
	}{{appLink, lines(0, 300), 3}, {sideLink, lines(0, 40), 1}, {initLink, lines(0, 30), 1}} {
		if got := n.handedTo(c.link); got != c.want {
			t.Errorf("%s: handed %d bytes, want %d", filepath.Base(c.link), len(got), len(c.want))
		}
		say := fmt.Sprintf("info: %s: %d rotated files, %d bytes handed to tail: its logs rotated while no agent ran, which no agent had seen", filepath.Base(c.link), c.files, len(c.want))
		if !strings.Contains(strings.Join(logged, "\n"), say) {
			t.Errorf("did not say %q:\n%s", say, strings.Join(logged, "\n"))
		}
	}
	if got := n.handedTo(link); got != "" {
		t.Errorf("the seen container was handed %q", got)
	}

	// Fluent Bit did not get to read them (a crash loop): the next start hands nothing more.
	if _, logged := n.launch(); len(logged) != 0 {
		t.Errorf("the next start: %v", logged)
	}
	if got := n.handedTo(appLink); got != lines(0, 300) {
		t.Errorf("handed %d bytes after the second start, want %d", len(got), len(lines(0, 300)))
	}
}

// A container restarted while no agent ran: each run's link is handed its own run's rotated
// files (N.log.<time>), so no line is handed twice.
func TestEachRunOfAContainerIsHandedItsOwnFiles(t *testing.T) {
	n, log, link := newPodNode(t)
	stopped := n.agentStopped(log, link, 10)
	run0, link0 := n.container("job-1", "app", 0)
	n.write(run0, lines(0, 20))
	n.rotate(run0, stopped.Add(time.Second))
	run1, link1 := n.container("job-1", "app", 1)
	n.write(run1, lines(20, 20))
	n.rotate(run1, stopped.Add(2*time.Second))
	n.launch()
	if got := n.handedTo(link0); got != lines(0, 20) {
		t.Errorf("run 0 handed %q", got)
	}
	if got := n.handedTo(link1); got != lines(20, 20) {
		t.Errorf("run 1 handed %q", got)
	}
}

// What an agent could have read is never handed: a container with no row whose files were
// rotated before the last agent stopped (tail deletes a rotated file's row once it has read
// it), and nothing on a node where no agent ran before (no DB). A pod deleted while no agent
// ran takes its files and its link with it: nothing to hand, nothing said.
func TestNoRowButReadOrNeverOurs(t *testing.T) {
	n, log, link := newPodNode(t)
	old, oldLink := n.container("old-1", "app", 0)
	n.write(old, lines(0, 50))
	n.rotate(old, time.Now().Add(-time.Hour))
	stopped := n.agentStopped(log, link, 10)
	gone, goneLink := n.container("gone-1", "app", 0)
	n.write(gone, lines(0, 50))
	n.rotate(gone, stopped.Add(time.Second))
	os.RemoveAll(filepath.Dir(gone))
	os.Remove(goneLink)
	if got, logged := n.launch(); got != "" || len(logged) != 0 {
		t.Fatalf("handed %q, logged %v", got, logged)
	}
	if got := n.handedTo(oldLink); got != "" {
		t.Fatalf("handed %q", got)
	}

	fresh := newNode(t)
	l, _ := fresh.container("new-1", "app", 0)
	fresh.write(l, lines(0, 50))
	fresh.rotate(l, time.Now())
	if got, logged := fresh.launch(); got != "" || len(logged) != 0 {
		t.Fatalf("with no DB: handed %q, logged %v", got, logged)
	}
}

// tailLetGo deletes rows as tail does when it lets a file go (at exit, every file it saw
// rotated), through the launcher's trigger.
func (n *node) tailLetGo(names ...string) {
	db, err := sql.Open("sqlite", n.db)
	if err != nil {
		n.t.Fatal(err)
	}
	defer db.Close()
	for _, name := range names {
		if _, err := db.Exec(`DELETE FROM in_tail_files WHERE name = ?`, name); err != nil {
			n.t.Fatal(err)
		}
	}
}

// The kubelet rotates a log in an agent's last seconds: tail, its inputs already stopped,
// sees the rotation, adds the new file, and at exit deletes the rotated file's row, read to
// its end or not. The trigger the launcher put in tail's DB kept the row: the next start
// hands the unread rest, once, as a file of its own (no row tells tail where to resume).
func TestRowTailLetGoAtExit(t *testing.T) {
	n, log, link := newPodNode(t)
	n.tailRows()
	if _, logged := n.launch(); len(logged) != 0 { // the first start puts the trigger in
		t.Fatalf("%v", logged)
	}
	n.write(log, lines(0, 100))
	rotated := n.rotate(log, time.Now())
	n.write(log, lines(100, 20))
	n.tailRows(row{name: rotated, offset: int64(len(lines(0, 60))), inode: ino(t, rotated), rotated: true},
		row{name: link, offset: 0, inode: ino(t, log)})
	n.tailLetGo(rotated) // at exit
	os.Chtimes(n.db, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	got, logged := n.launch()
	if got != lines(60, 40) {
		t.Fatalf("handed %q, want lines 60-99\n%v", got, logged)
	}
	// Handled: the next start hands nothing more (what it handed is read by tail then).
	handed, _ := filepath.Glob(filepath.Join(n.resume, "*", "*.log"))
	n.tailRows(row{name: handed[0], offset: int64(len(lines(60, 40))), inode: ino(t, handed[0])},
		row{name: link, offset: int64(len(lines(100, 20))), inode: ino(t, log)})
	if got, _ := n.launch(); got != "" {
		t.Fatalf("handed %q again", got)
	}
}

// A rotated file tail let go after reading it to its end (Rotate_Wait passed, or at exit) is
// not handed: its row's offset is its size.
func TestRowTailLetGoReadToItsEnd(t *testing.T) {
	n, log, link := newPodNode(t)
	n.tailRows()
	n.launch()
	n.write(log, lines(0, 100))
	rotated := n.rotate(log, time.Now())
	n.tailRows(row{name: rotated, offset: int64(len(lines(0, 100))), inode: ino(t, rotated), rotated: true},
		row{name: link, offset: 0, inode: ino(t, log)})
	n.tailLetGo(rotated)
	n.rotate(log, time.Now().Add(time.Second)) // and compressed since
	if got, logged := n.launch(); got != "" {
		t.Fatalf("handed %q\n%v", got, logged)
	}
}

// A file tail saw rotated and had not finished when the agent was killed (its row kept,
// named by the rotated name, the file still plain): handed from the row's offset. Tail's
// path does not reach a rotated name, so tail would otherwise drop the row at start.
func TestRotatedRowAfterAKill(t *testing.T) {
	n, log, link := newPodNode(t)
	n.write(log, lines(0, 100))
	rotated := n.rotate(log, time.Now())
	n.write(log, lines(100, 20))
	n.tailRows(row{name: rotated, offset: int64(len(lines(0, 70))), inode: ino(t, rotated), rotated: true},
		row{name: link, offset: int64(len(lines(100, 20))), inode: ino(t, log)})
	os.Chtimes(n.db, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	got, logged := n.launch()
	if got != lines(70, 30) {
		t.Fatalf("handed %q, want lines 70-99\n%v", got, logged)
	}
}
