package main

// Fluent Bit's tail knows a file by its inode alone (its in_tail_files rows), resumes a file
// its first scan finds at the offset the file's row holds, and then deletes the row of every
// inode that scan did not find. When the kubelet rotates a container's log while no agent
// runs (N.log renamed N.log.<time>, a new N.log opened), the renamed file is no longer under
// /var/log/containers: its row is deleted at start and its unread rest is lost.
//
// The resumer puts such files where the first scan finds them: each in a directory of its
// own under dir (a container may have several), under the name of the container's link in
// /var/log/containers, so that the tag, built from the file name alone, and with it the pod's
// identity, stay what they were:
//   - a rotated file that still has its inode: a symbolic link to it, and tail resumes at the
//     row's offset;
//   - one the kubelet has compressed since (N.log.<time>.gz, tail cannot seek in it): its rest
//     after the offset, decompressed into a plain file;
//   - files rotated after it, which no agent saw (rotated again while none ran): whole, linked
//     or decompressed. With no row, tail reads them from their head (Read_from_Head On).
//
// A container that started while no agent ran has no row at all: tail reads its current
// file from the head, but the files the kubelet rotated before an agent came back are under
// no path tail reads. Each one rotated after the last agent stopped is handed whole (see
// resumeUnseen).
// What tail has read to the end is cleared at the next start, and a file the kubelet deleted
// goes with its link.

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type resumer struct {
	dir        string // handed files: dir/<n>/<link name>
	containers string // the kubelet's links, <pod>_<ns>_<container>-<id>.log
	log        func(level, format string, args ...any)

	rows      []row
	byInode   map[uint64]*row
	lastWrite time.Time
	reused    []int64 // rows whose inode a newer file has taken
	next      int     // the next free dir/<n>
	handed    int     // files handed to tail this start
	inflated  int64
	perLink   map[string]*handedTo // what each container was handed, for its log line
	links     []string             // perLink's keys, in the order first handed
}

// handedTo is what one container was handed this start.
type handedTo struct {
	files  int
	bytes  int64 // that tail will read: past the row's offset
	unseen bool  // the container no agent had seen
}

// run reads tail's DB and hands tail what it would lose.
func (r *resumer) run(db string) error {
	rows, lastWrite, err := readRows(db)
	if err != nil {
		return err
	}
	// The rotated files whose rows tail deleted when it let them go: handed from where it
	// stopped, like the rotated rows it kept. Only rotated ones: a row deleted otherwise was
	// of a file that tail no longer found, which a row of its own or a hand-back covers.
	letGo, err := letGoRows(db)
	if err != nil {
		r.log("warn", "the rows tail let go cannot be read: %v", err)
	}
	live := map[uint64]bool{}
	for _, rw := range rows {
		live[rw.inode] = true
	}
	for _, rw := range letGo {
		if rw.rotated && !live[rw.inode] {
			rows = append(rows, rw)
			live[rw.inode] = true
		}
	}
	r.rows, r.lastWrite = rows, lastWrite
	r.byInode = make(map[uint64]*row, len(rows))
	for i := range rows {
		r.byInode[rows[i].inode] = &rows[i]
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	kept, cleared := r.clear()
	r.resume(kept)
	r.resumeUnseen()
	if len(r.reused) > 0 {
		if err := forgetRows(db, r.reused); err != nil {
			return err
		}
		r.log("info", "forgot %d offsets whose inode a newer file has taken", len(r.reused))
	}
	// From here on tail's deletions are kept, for the next start (they are handled now).
	err = keepLetGo(db)
	if err == nil {
		err = clearLetGo(db)
	}
	if err != nil {
		r.log("warn", "the rows tail lets go will not be kept: %v", err)
	}
	for _, link := range r.links {
		h := r.perLink[link]
		why := "the rest of its logs rotated while no agent ran"
		if h.unseen {
			why = "its logs rotated while no agent ran, which no agent had seen"
		}
		r.log("info", "%s: %d rotated files, %d bytes handed to tail: %s", link, h.files, h.bytes, why)
	}
	if r.handed > 0 || cleared > 0 {
		r.log("info", "rotated logs: %d files handed to tail (%d bytes decompressed), %d read ones cleared", r.handed, r.inflated, cleared)
	}
	return nil
}

// counted adds a file of n bytes handed for link to its log line.
func (r *resumer) counted(link string, n int64) {
	if r.perLink == nil {
		r.perLink = map[string]*handedTo{}
	}
	h := r.perLink[link]
	if h == nil {
		h = &handedTo{}
		r.perLink[link] = h
		r.links = append(r.links, link)
	}
	h.files++
	h.bytes += n
}

// clear removes what tail has read to its end, or what the kubelet deleted, from dir. It
// returns the inodes still handed to tail. A link whose file the kubelet compressed before
// tail finished it is handed again as its rest.
func (r *resumer) clear() (kept map[uint64]bool, cleared int) {
	kept = map[uint64]bool{}
	subs, _ := os.ReadDir(r.dir)
	for _, sub := range subs {
		if n, err := strconv.Atoi(sub.Name()); err == nil && n >= r.next {
			r.next = n + 1
		}
		d := filepath.Join(r.dir, sub.Name())
		files, _ := os.ReadDir(d)
		for _, f := range files {
			p := filepath.Join(d, f.Name())
			if !strings.HasSuffix(p, ".log") { // a decompression cut short
				os.Remove(p)
				continue
			}
			fi, err := os.Stat(p)
			if err != nil { // a link whose file is gone
				if target, err := os.Readlink(p); err == nil {
					if rw := r.rowNamed(p); rw != nil {
						r.handCopy(target+".gz", f.Name(), rw.offset)
					}
				}
				os.Remove(p)
				cleared++
				continue
			}
			ino := inode(fi)
			if rw := r.byInode[ino]; rw != nil && rw.offset >= fi.Size() {
				os.Remove(p)
				cleared++
				continue
			}
			kept[ino] = true
		}
		os.Remove(d) // only if empty
	}
	return kept, cleared
}

func (r *resumer) rowNamed(name string) *row {
	for i := range r.rows {
		if r.rows[i].name == name {
			return &r.rows[i]
		}
	}
	return nil
}

// rotatedName is the kubelet's name for a rotated log: <N>.log.<YYYYMMDD-hhmmss>[.gz].
var rotatedName = regexp.MustCompile(`^\d+\.log\.(\d{8}-\d{6})(\.gz)?$`)

type rotatedFile struct {
	path  string
	at    time.Time
	gz    bool
	inode uint64
	born  time.Time
}

// container is the rows of one container's log directory.
type container struct {
	link string // its name in /var/log/containers
	rows []*row
}

// resume hands tail the rotated files of every row whose inode is no longer the file tail
// would find under the row's name.
func (r *resumer) resume(kept map[uint64]bool) {
	links := r.linksByDir()
	byDir := map[string]*container{}
	var dirs []string
	for i := range r.rows {
		rw := &r.rows[i]
		if kept[rw.inode] || strings.HasPrefix(rw.name, r.dir+"/") {
			continue
		}
		// A rotated file is under no path tail reads, wherever it is.
		if fi, err := os.Stat(rw.name); err == nil && inode(fi) == rw.inode && !rw.rotated {
			if !born(rw.name).After(r.lastWrite) {
				continue // tail finds it where it was
			}
			r.reused = append(r.reused, rw.id)
		}
		var dir, link string
		if rw.rotated {
			dir = filepath.Dir(rw.name)
			link = links[dir]
		} else if target, err := os.Readlink(rw.name); err == nil {
			dir, link = filepath.Dir(target), filepath.Base(rw.name)
		}
		if link == "" {
			continue // no link names the container any more: the pod is gone, and its logs with it
		}
		c := byDir[dir]
		if c == nil {
			c = &container{link: link}
			byDir[dir] = c
			dirs = append(dirs, dir)
		}
		c.rows = append(c.rows, rw)
	}
	slices.Sort(dirs)
	for _, dir := range dirs {
		r.resumeContainer(dir, byDir[dir])
	}
}

// resumeContainer hands tail the rest of each row's rotated file in dir, and the files
// rotated after the one that was being written when the agent stopped.
func (r *resumer) resumeContainer(dir string, c *container) {
	files := rotatedFiles(dir)
	claimed := make([]bool, len(files))
	find := func(rw *row) int {
		for i, f := range files {
			if !f.gz && f.inode == rw.inode && !f.born.After(r.lastWrite) || rw.rotated && f.gz && f.path == rw.name+".gz" {
				return i
			}
		}
		return -1
	}
	var active *row // the row of the file being written when the agent stopped
	for _, rw := range c.rows {
		if i := find(rw); i >= 0 {
			claimed[i] = true
		}
		if !rw.rotated {
			active = rw
		}
	}
	for _, rw := range c.rows {
		i := find(rw)
		if i < 0 && rw == active {
			// Rotated after tail last wrote its DB, and compressed since: the first such
			// file no other row claims.
			since := r.lastWrite.Truncate(time.Second)
			for j, f := range files {
				if !claimed[j] && f.gz && !f.at.Before(since) {
					i, claimed[j] = j, true
					break
				}
			}
		}
		switch {
		case i >= 0 && rw.letGo:
			r.handRest(files[i], c.link, rw.offset)
		case i >= 0:
			r.hand(files[i], c.link, rw.offset)
		default:
			r.log("warn", "%s: the rotated file tail was reading (inode %d, %d bytes read) is gone: the kubelet keeps only so many", c.link, rw.inode, rw.offset)
		}
		if rw == active {
			// Every file rotated after it was written while no agent ran; without it, every
			// file rotated since tail last wrote its DB.
			since := r.lastWrite.Truncate(time.Second)
			for j := i + 1; j < len(files); j++ {
				if !claimed[j] && (i >= 0 || !files[j].at.Before(since)) {
					claimed[j] = true
					r.hand(files[j], c.link, 0)
				}
			}
		}
	}
}

// hand gives tail f's bytes from offset on: a link to a plain file (tail resumes at the
// row's offset, or reads a file it never saw from its head), or the decompressed rest of a
// compressed one.
func (r *resumer) hand(f rotatedFile, link string, offset int64) {
	if f.gz {
		r.handCopy(f.path, link, offset)
		return
	}
	fi, err := os.Stat(f.path)
	if err != nil || fi.Size() <= offset {
		return // read to its end already
	}
	p, err := r.newPath(link)
	if err == nil {
		err = os.Symlink(f.path, p)
	}
	if err != nil {
		r.log("error", "%s: cannot hand %s to tail: %v", link, f.path, err)
		return
	}
	r.handed++
	r.counted(link, fi.Size()-offset)
}

// handRest gives tail what follows offset in f as a plain file of its own: for a row tail
// deleted, no row tells tail where to resume a link to f.
func (r *resumer) handRest(f rotatedFile, link string, offset int64) {
	if !f.gz {
		if fi, err := os.Stat(f.path); err != nil || fi.Size() <= offset {
			return // read to its end (tail let it go once it had), or gone
		}
	}
	r.handCopy(f.path, link, offset)
}

// handCopy writes what follows offset in a rotated file, compressed or not, as a plain file for
// tail, which has no row for it and reads it from its head. offset must fall at a line's end,
// as tail's offsets do: anything else means the file is not the one the row was about.
func (r *resumer) handCopy(path, link string, offset int64) {
	data, err := readRotated(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.log("error", "%s: cannot read %s: %v", link, path, err)
		}
		return
	}
	if offset > int64(len(data)) || offset > 0 && data[offset-1] != '\n' {
		r.log("warn", "%s: %s does not continue where tail stopped (byte %d of %d): not handed", link, path, offset, len(data))
		return
	}
	rest := data[offset:]
	if len(rest) == 0 {
		return
	}
	p, err := r.newPath(link)
	if err == nil {
		err = writeAtomic(p, rest)
	}
	if err != nil {
		r.log("error", "%s: cannot hand the rest of %s to tail: %v", link, path, err)
		return
	}
	r.handed++
	r.inflated += int64(len(rest))
	r.counted(link, int64(len(rest)))
}

// resumeUnseen hands tail, whole, the rotated files of each container that neither a row nor
// a handed file names, when the kubelet rotated them after the last agent stopped (when tail
// last wrote its DB): no agent has read them. A file rotated before then was within that
// agent's reach, so a container whose rows tail deleted once it had read its rotated files is
// never sent again; and on a node where no agent ran before (no DB), the logs already there
// are history, not a gap. Only the files of the link's own run (N.log.<time> of its N.log)
// are its: a restarted container's earlier runs have links of their own.
func (r *resumer) resumeUnseen() {
	if r.lastWrite.IsZero() {
		return
	}
	targets := r.linkTargets()
	known := r.knownLinks(targets)
	since := r.lastWrite.Truncate(time.Second) // rotated files are named to the second
	for _, target := range slices.Sorted(maps.Keys(targets)) {
		link := targets[target]
		if known[link] || !strings.HasSuffix(link, ".log") {
			continue
		}
		own := filepath.Base(target) + "."
		for _, f := range rotatedFiles(filepath.Dir(target)) {
			if strings.HasPrefix(filepath.Base(f.path), own) && !f.at.Before(since) {
				r.hand(f, link, 0)
			}
		}
		if h := r.perLink[link]; h != nil {
			h.unseen = true
		}
	}
}

// knownLinks is the links some agent has seen: named by a row (the link itself, a rotated
// file in the container's directory, or a file handed under the link's name), or handed
// to tail at an earlier start and not yet read. targets are the links by their files.
func (r *resumer) knownLinks(targets map[string]string) map[string]bool {
	known := map[string]bool{}
	for _, rw := range r.rows {
		switch {
		case strings.HasPrefix(rw.name, r.dir+"/"):
			known[filepath.Base(rw.name)] = true
		case rw.rotated: // dir/N.log.<time>: the link to dir/N.log
			if base := filepath.Base(rw.name); rotatedName.MatchString(base) {
				n, _, _ := strings.Cut(base, ".")
				known[targets[filepath.Join(filepath.Dir(rw.name), n+".log")]] = true
			}
		default:
			known[filepath.Base(rw.name)] = true
		}
	}
	handed, _ := filepath.Glob(filepath.Join(r.dir, "*", "*.log"))
	for _, h := range handed {
		known[filepath.Base(h)] = true
	}
	return known
}

// newPath is dir/<n>/<link> in a new directory n.
func (r *resumer) newPath(link string) (string, error) {
	d := filepath.Join(r.dir, strconv.Itoa(r.next))
	r.next++
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(d, link), nil
}

// linkTargets maps the file each link in containers names (<dir>/N.log) to the link's name.
func (r *resumer) linkTargets() map[string]string {
	m := map[string]string{}
	entries, _ := os.ReadDir(r.containers)
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(r.containers, e.Name())); err == nil {
			m[target] = e.Name()
		}
	}
	return m
}

// linksByDir maps each container's log directory to its link's name in containers.
func (r *resumer) linksByDir() map[string]string {
	m := map[string]string{}
	for target, link := range r.linkTargets() {
		m[filepath.Dir(target)] = link
	}
	return m
}

// rotatedFiles lists dir's rotated logs, oldest first.
func rotatedFiles(dir string) []rotatedFile {
	entries, _ := os.ReadDir(dir)
	var fs []rotatedFile
	for _, e := range entries {
		m := rotatedName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		at, err := time.Parse("20060102-150405", m[1])
		if err != nil {
			continue
		}
		f := rotatedFile{path: filepath.Join(dir, e.Name()), at: at, gz: m[2] != ""}
		if fi, err := os.Stat(f.path); err == nil {
			f.inode, f.born = inode(fi), born(f.path)
		}
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(a, b rotatedFile) int { return a.at.Compare(b.at) })
	return fs
}

// born is when the file at path was created; zero where the filesystem does not say. A
// file created after tail last wrote its DB is not the file of any row, whatever its inode:
// the filesystem reuses the inodes of deleted files, such as a rotated log the kubelet
// compressed.
func born(path string) time.Time {
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BTIME, &st) != nil || st.Mask&unix.STATX_BTIME == 0 {
		return time.Time{}
	}
	return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec))
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// maxRotated bounds a decompressed rotated log: the kubelet rotates at containerLogMaxSize
// (10 MiB on GKE), so anything much larger is not one.
const maxRotated = 256 << 20

// readRotated reads a rotated log whole, decompressing one the kubelet compressed (.gz).
func readRotated(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var zr io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		if zr, err = gzip.NewReader(f); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, io.LimitReader(zr, maxRotated+1)); err != nil {
		return nil, err
	}
	if b.Len() > maxRotated {
		return nil, fmt.Errorf("more than %d bytes decompressed", maxRotated)
	}
	return b.Bytes(), nil
}

// writeAtomic writes a file tail may find only whole: a name tail's Path does not match
// until it is complete.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".part"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
