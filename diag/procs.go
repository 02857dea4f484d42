package diag

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// Process is a process holding a socket through one of its file descriptors.
type Process struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	FD   int    `json:"fd"`
}

// procScan is what a scan of /proc found about the processes of one namespace.
type procScan struct {
	// owners maps a socket inode to every (process, fd) holding it.
	owners map[uint32][]Process
	// pids are the processes that live in the namespace.
	pids []int
	// hidden are the processes whose namespace or descriptors could not be
	// read.
	hidden []int
}

// scanProcesses finds the processes of namespace ns
// under procRoot and the socket inodes their descriptors hold. Processes
// that vanish mid-scan are skipped: a snapshot of a churning target is still
// a snapshot.
func scanProcesses(procRoot string, ns *netns.NS) procScan {
	scan := procScan{owners: make(map[uint32][]Process)}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return scan
	}
	var held []heldSocket
	var names, links []byte
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := procRoot + "/" + e.Name()
		fi, err := os.Stat(dir + "/ns/net")
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				scan.hidden = append(scan.hidden, pid)
			}
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Ino != ns.Inode || st.Dev != ns.Dev() {
			continue
		}
		scan.pids = append(scan.pids, pid)
		var ok2 bool
		if held, names, links, ok2 = scanFDs(dir, pid, held, names, links); !ok2 {
			scan.hidden = append(scan.hidden, pid)
		}
	}
	scan.owners = ownersOf(held)
	return scan
}

// heldSocket is one descriptor found holding a socket.
type heldSocket struct {
	inode uint32
	p     Process
}

// ownersOf groups held by inode, keeping the order of the scan within each
// socket, in one map sized up front whose slices share one array.
func ownersOf(held []heldSocket) map[uint32][]Process {
	slices.SortStableFunc(held, func(a, b heldSocket) int { return cmp.Compare(a.inode, b.inode) })
	procs := make([]Process, len(held))
	n := 0
	for i := 0; i < len(held); {
		if i == 0 || held[i].inode != held[i-1].inode {
			n++
		}
		procs[i] = held[i].p
		i++
	}
	owners := make(map[uint32][]Process, n)
	for i := 0; i < len(held); {
		j := i + 1
		for j < len(held) && held[j].inode == held[i].inode {
			j++
		}
		owners[held[i].inode] = procs[i:j:j]
		i = j
	}
	return owners
}

// fdScanWorkers bounds how many descriptor links of one process are read
// at once.
var fdScanWorkers = runtime.GOMAXPROCS(0)

// scanFDs appends the sockets held by process pid to held. It reports false
// when the descriptor table could not be read at all. names and links are
// buffers to reuse, returned grown.
//
// The table is listed with getdents and each link read with readlinkat on
// the directory, with the names the kernel listed as they are: no
// allocation and no path lookup from /proc down per descriptor. Large
// tables are read by several threads at once.
func scanFDs(dir string, pid int, held []heldSocket, names, links []byte) ([]heldSocket, []byte, []byte, bool) {
	dfd, err := unix.Open(dir+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return held, names, links, errors.Is(err, unix.ENOENT) // it exited: nothing hidden
	}
	defer unix.Close(dfd)
	// The names, each NUL-terminated as readlinkat needs them, and where
	// each starts.
	names = names[:0]
	var offs []int
	if cap(links) < 64<<10 {
		links = make([]byte, 64<<10)
	}
	buf := links[:cap(links)]
	for {
		n, err := unix.Getdents(dfd, buf)
		if err != nil {
			return held, names, links, errors.Is(err, unix.ENOENT)
		}
		if n <= 0 {
			break
		}
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if len(name) > 0 && name[0] >= '0' && name[0] <= '9' {
				offs = append(offs, len(names))
				names = append(names, name...)
				names = append(names, 0)
			}
			b = b[reclen:]
		}
	}
	// os.ReadDir, which this replaces, listed the names sorted.
	nameAt := func(off int) []byte {
		return names[off : off+bytes.IndexByte(names[off:], 0)]
	}
	slices.SortFunc(offs, func(a, b int) int { return bytes.Compare(nameAt(a), nameAt(b)) })

	type found struct{ inode, fd uint32 }
	read := func(offs []int, out []found) []found {
		var lbuf [64]byte
		for _, off := range offs {
			n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dfd), uintptr(unsafe.Pointer(&names[off])), uintptr(unsafe.Pointer(&lbuf[0])), uintptr(len(lbuf)), 0, 0)
			if errno != 0 || int(n) >= len(lbuf) {
				continue
			}
			inode, ok := socketInodeBytes(lbuf[:n])
			if !ok {
				continue
			}
			fd, ok := parseUint32(nameAt(off))
			if !ok {
				continue
			}
			out = append(out, found{inode, fd})
		}
		return out
	}
	var parts [][]found
	if w := min(fdScanWorkers, len(offs)/2048); w > 1 {
		parts = make([][]found, w)
		var wg sync.WaitGroup
		for i := range w {
			chunk := offs[len(offs)*i/w : len(offs)*(i+1)/w]
			wg.Go(func() { parts[i] = read(chunk, make([]found, 0, len(chunk))) })
		}
		wg.Wait()
	} else {
		parts = [][]found{read(offs, nil)}
	}
	var comm string
	n := 0
	for _, part := range parts {
		n += len(part)
	}
	if cap(held)-len(held) < n {
		// Doubled: processes with thousands of sockets would otherwise
		// copy the sockets of all before them each.
		held = slices.Grow(held, max(n, len(held)))
	}
	for _, part := range parts {
		for _, f := range part {
			if comm == "" {
				comm = readComm(dir)
			}
			held = append(held, heldSocket{f.inode, Process{PID: pid, Comm: comm, FD: int(f.fd)}})
		}
	}
	return held, names, links, true
}

// socketInodeBytes is socketInode on the link's bytes.
func socketInodeBytes(link []byte) (uint32, bool) {
	const prefix = "socket:["
	if len(link) < len(prefix)+2 || string(link[:len(prefix)]) != prefix || link[len(link)-1] != ']' {
		return 0, false
	}
	return parseUint32(link[len(prefix) : len(link)-1])
}

// parseUint32 parses a decimal number as strconv.ParseUint(s, 10, 32) does.
func parseUint32(b []byte) (uint32, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n = n*10 + uint64(c-'0'); n > 1<<32-1 {
			return 0, false
		}
	}
	return uint32(n), true
}

// socketInode parses the "socket:[12345]" target of a descriptor link.
func socketInode(link string) (uint32, bool) { return socketInodeBytes([]byte(link)) }

// describeProcesses counts pids and names the first few, so that a user
// told some processes were out of reach knows which.
func describeProcesses(procRoot string, pids []int) string {
	const named = 3
	var b strings.Builder
	if len(pids) == 1 {
		b.WriteString("1 process")
	} else {
		fmt.Fprintf(&b, "%d processes", len(pids))
	}
	for i, pid := range pids[:min(len(pids), named)] {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		fmt.Fprintf(&b, "%spid %d %s", sep, pid, readComm(procRoot+"/"+strconv.Itoa(pid)))
	}
	if len(pids) > named {
		fmt.Fprintf(&b, " and %d more", len(pids)-named)
	}
	if len(pids) > 0 {
		b.WriteString(")")
	}
	return b.String()
}

func readComm(dir string) string {
	b, err := os.ReadFile(dir + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSuffix(string(b), "\n")
}
